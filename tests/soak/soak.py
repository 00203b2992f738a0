#!/usr/bin/env python3
"""Soak run: a relay under churn, reloads and a flood for a while, then back to idle.

  tests/soak/soak.py [--build-dir build] [--minutes 10] [--threads 2]

For --minutes the relay (on loopback, default limits and policy) gets, all at once:
  * 50 clients (10 rooms x 5) joining, streaming 50 packets/s each for 20 s and
    leaving, round after round (wzp-loadgen);
  * a storm of 100 joins hanging up at once every minute (wzp-loadgen --storm);
  * SIGHUP (policy reload) every 10 s;
  * one handshake flood of 2 000 Initials/s for 5 s from 300 sources, half-way through
    (wzp-flood).
Every 10 s it samples the relay's RSS, open file descriptors and /metrics. Then the
load stops, and within 20 s connections, handshakes, sessions, buffered signal bytes
and worker table entries must be back at 0 and the descriptors back at their start
value. Prints one line per sample and a summary; exit status 0 only if everything
came back. Everything runs on loopback and stops by itself.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def total(values, prefix):
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"VmRSS:\s+(\d+)", f.read())
    return int(m.group(1)) if m else 0


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


IDLE_GAUGES = [
    "wzp_relay_connections",
    "wzp_relay_handshakes_in_progress",
    "wzp_relay_active_sessions",
    "wzp_relay_worker_conns",
    "wzp_relay_worker_cid_entries",
    "wzp_relay_worker_slots_used",
    "wzp_relay_worker_signal_bytes",
]


def sample(relay, port):
    m = scrape(port)
    return {
        "rss_kb": proc_rss_kb(relay.pid),
        "fds": proc_fds(relay.pid),
        "conns": total(m, "wzp_relay_connections"),
        "handshakes": total(m, "wzp_relay_handshakes_in_progress"),
        "sessions": total(m, "wzp_relay_active_sessions"),
        "joins": total(m, "wzp_relay_joins_total"),
        "retries": total(m, "wzp_relay_retries_sent_total"),
        "reloads": total(m, "wzp_relay_policy_reloads_total"),
        "idle": {g: total(m, g) for g in IDLE_GAUGES},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    bindir = os.path.abspath(a.build_dir)
    work = tempfile.mkdtemp(prefix="wzp-soak-")
    udp, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    target = "127.0.0.1:%d" % udp
    log = open(os.path.join(work, "relay.log"), "w")
    relay = subprocess.Popen(
        [os.path.join(bindir, "wzp-relay"), "--listen", target, "-i",
         os.path.join(work, "identity"), "--threads", str(a.threads),
         "--metrics-port", str(http)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            scrape(http)
            break
        except OSError:
            if relay.poll() is not None or time.monotonic() > deadline:
                sys.exit("soak: the relay did not start; see %s/relay.log" % work)
            time.sleep(0.1)
    time.sleep(1)
    start = sample(relay, http)
    print("soak: relay pid %d, %d workers, log %s/relay.log" % (relay.pid, a.threads, work))
    print("soak: start: RSS %d kB, %d fds" % (start["rss_kb"], start["fds"]))

    loadgen = os.path.join(bindir, "wzp-loadgen")
    flood = os.path.join(bindir, "wzp-flood")
    devnull = subprocess.DEVNULL
    t0 = time.monotonic()
    end = t0 + a.minutes * 60
    rounds = storms = 0
    load = storm = flooder = None
    flooded = False
    next_reload = t0 + 10
    next_storm = t0 + 30
    next_sample = t0 + 10
    peak_rss = start["rss_kb"]
    while time.monotonic() < end:
        now = time.monotonic()
        if load is None or load.poll() is not None:
            load = subprocess.Popen([loadgen, target, "--rooms", "10", "--participants", "5",
                                     "--duration", "20", "--room-prefix", "soak-%d" % rounds],
                                    stdout=devnull, stderr=devnull)
            rounds += 1
        if now >= next_storm and (storm is None or storm.poll() is not None):
            storm = subprocess.Popen([loadgen, target, "--storm", "100", "--concurrency", "20",
                                      "--room-prefix", "storm"], stdout=devnull, stderr=devnull)
            storms += 1
            next_storm += 60
        if not flooded and now >= t0 + a.minutes * 30:
            flooder = subprocess.Popen([flood, target, "--duration", "5"], stdout=subprocess.PIPE,
                                       stderr=devnull, text=True)
            flooded = True
        if now >= next_reload:
            relay.send_signal(signal.SIGHUP)
            next_reload += 10
        if now >= next_sample:
            s = sample(relay, http)
            peak_rss = max(peak_rss, s["rss_kb"])
            print("soak: %4.0f s  RSS %6d kB  fds %4d  conns %4d  handshakes %3d  sessions %3d  "
                  "joins %6d  retries %6d  reloads %4d" %
                  (now - t0, s["rss_kb"], s["fds"], s["conns"], s["handshakes"], s["sessions"],
                   s["joins"], s["retries"], s["reloads"]), flush=True)
            next_sample += 10
        if relay.poll() is not None:
            sys.exit("soak: the relay exited (%d); see %s/relay.log" % (relay.returncode, work))
        time.sleep(0.2)

    for p in (load, storm):
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in (load, storm, flooder):
        if p is not None:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    if flooder is not None and flooder.stdout:
        print("soak: flood: %s" % flooder.stdout.read().strip())
    settle = time.monotonic()
    while True:
        s = sample(relay, http)
        # the scrape's own connection may or may not be counted: one fd of slack
        back = all(v == 0 for v in s["idle"].values()) and s["fds"] <= start["fds"] + 1
        if back or time.monotonic() - settle > 20:
            break
        time.sleep(0.5)
    print("soak: %.0f min: %d load rounds (50 clients each), %d storms of 100, %d reloads, "
          "%d joins, %d Retry sent" % (a.minutes, rounds, storms, s["reloads"], s["joins"],
                                      s["retries"]))
    print("soak: RSS start %d kB, peak %d kB, end %d kB; fds start %d, end %d; back to idle "
          "after %.1f s" % (start["rss_kb"], peak_rss, s["rss_kb"], start["fds"], s["fds"],
                            time.monotonic() - settle))
    for g, v in s["idle"].items():
        print("soak:   %-32s %d" % (g, v))
    time.sleep(12)  # the relay hands freed memory back after 10 s without connections
    print("soak: RSS after 12 s idle: %d kB" % proc_rss_kb(relay.pid))
    relay.send_signal(signal.SIGTERM)
    try:
        rc = relay.wait(timeout=10)
    except subprocess.TimeoutExpired:
        relay.kill()
        rc = -1
    ok = back and rc == 0
    print("soak: %s (relay exit status %d)" % ("PASS" if ok else "FAIL", rc))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
