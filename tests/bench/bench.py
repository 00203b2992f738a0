#!/usr/bin/env python3
"""bench.py - the wzp-relay benchmark suite (run it through tests/bench/run.sh).

For every scenario it starts build/wzp-relay on a free loopback port with a temporary
identity, runs build/wzp-loadgen against it (the generator samples the relay's CPU and
RSS from /proc at the edges of the measured window and sends it SIGUSR1 there, so the
relay's log holds a counters line at each edge), stops the relay, then runs
build/udp-baseline with the same traffic pattern (raw UDP, no QUIC) for the ratio.
Results go to a table on stdout and to a JSON file (default BUILD/bench/results.json).

Scenarios (full): 1x2, 10x5, 50x10, 1x100 with 5 speakers, 50x10 again with a
different relay thread count (1 vs 2), and a connection storm at rising concurrency.
--smoke runs a small version of each for ~2 s and fails (exit 1) only if something did
not work or delivery was below --min-delivery; timings never fail a run. In a
sanitizer build tree the smoke skips itself (exit 77). Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = 77

# name, rooms, participants, speakers (None = all), relay threads (None = --threads)
# (name, rooms, participants, speakers or None = all, relay threads or None = --threads,
# options). Clients load the relay as real ones do (wzp-loadgen's defaults: every packet
# acknowledged at once, as quinn does; speakers' send times spread over the period), and
# the raw-UDP baseline's receivers answer every packet likewise. Options: "shape": the
# generators' --acks/--phases (GROUPED: the batch-ACK, grouped shape every figure before
# 2026-12-07 used), "relay_args": extra relay flags, "pin": relay (and the baseline's
# forwarder) on CPU 0, generators on CPU 1 -- the issue-12 target setting. The baseline's
# forwarder polls its socket as the relay does (--poll-every: udp-baseline's default is
# the relay's, and a row's or --relay-arg's value goes to both).
GROUPED = ["--acks", "batch", "--phases", "grouped"]
PINNED_40x5 = {"pin": True}
FULL = [
    ("1x2", 1, 2, None, None),
    ("10x5", 10, 5, None, None),
    ("40x5 t1", 40, 5, None, 1, PINNED_40x5),
    ("40x5 t1 co5", 40, 5, None, 1, {"pin": True, "relay_args": ["--coalesce", "5"]}),
    ("40x5 t1 pe0", 40, 5, None, 1, {"pin": True, "relay_args": ["--poll-every", "0"]}),
    ("50x10", 50, 10, None, None),
    ("1x100/5", 1, 100, 5, None),
    ("50x10 grouped", 50, 10, None, None, {"shape": GROUPED}),
]
SMOKE = [
    ("1x2", 1, 2, None, None),
    ("4x5", 4, 5, None, None),
    ("10x10", 10, 10, None, None),
    ("1x30/3", 1, 30, 3, None),
    ("10x10 grouped", 10, 10, None, None, {"shape": GROUPED}),
]
STORM_FULL = {"joins": 400, "levels": [1, 8, 32, 128, 200], "rooms": 10}
STORM_SMOKE = {"joins": 60, "levels": [16], "rooms": 4}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description="wzp-relay benchmark suite")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--smoke", action="store_true", help="short functional run (CI)")
    ap.add_argument("--duration", type=float, help="measured seconds per scenario (10; smoke 2)")
    ap.add_argument("--warmup", type=float, help="seconds before the window (1; smoke 0.5)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="relay worker threads (default: online CPUs)")
    ap.add_argument("--gen-threads", type=int, default=1, help="wzp-loadgen threads (default 1)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every scenario N times and report medians (default 1)")
    ap.add_argument("--only", help="comma-separated scenario names (e.g. 50x10,storm)")
    ap.add_argument("--out", help="JSON result file (default BUILD/bench/results.json)")
    ap.add_argument("--no-build", action="store_true", help="do not run cmake --build first")
    ap.add_argument("--relay-arg", action="append", default=[], metavar="ARG",
                    help="extra relay argument (repeatable), e.g. --relay-arg=-s --relay-arg=none")
    ap.add_argument("--report", metavar="JSON",
                    help="only print the tables of an earlier results file (figures recomputed)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the raw-UDP runs")
    ap.add_argument("--no-compare", action="store_true", help="skip the 1-vs-2 thread run")
    ap.add_argument("--perf", action="store_true",
                    help="one extra 50x10 run with perf recording the relay; its top "
                    "libraries and functions go to BUILD/bench/perf-50x10.txt")
    ap.add_argument("--wait-quiet", type=float,
                    help="before each run, wait up to SEC for other processes to leave the "
                    "CPUs idle (shared machines; default 30, smoke 0)")
    ap.add_argument("--no-saturation", dest="saturation", action="store_false",
                    help="skip the saturation ramp (1 and 2 relay threads) and the run at half "
                    "of saturation (name for --only: sat)")
    ap.add_argument("--sat-duration", type=float,
                    help="measured seconds per saturation step (default 4; smoke 1)")
    ap.add_argument("--sat-sockets", type=int, default=0,
                    help="shared UDP sockets per generator thread in the saturation ramp "
                    "(wzp-loadgen --sockets; default 0 = one per client, as real clients "
                    "have). The run at half of saturation always uses one socket per client")
    ap.add_argument("--scaling-rooms", type=int, metavar="N",
                    help="with the saturation ramps: N rooms x 10 on 1 worker, N and 2N on 2 "
                    "workers, no quota, alternated: what a second worker costs per "
                    "datagram at the same total load and at the same load per worker. "
                    "Default 12, smoke 0; 0 (or --no-compare) skips it")
    ap.add_argument("--scaling-repeat", type=int, default=3, metavar="K",
                    help="alternations of that comparison (default 3; medians)")
    ap.add_argument("--sat-rooms", metavar="LIST",
                    help="comma-separated room counts of the saturation ramp (default "
                    + ",".join(map(str, SAT_ROOMS)) + ")")
    ap.add_argument("--half-rooms", type=int, metavar="N",
                    help="skip the ramps and run the half-saturation measurement at N rooms x 10 "
                    "(to compare builds or options at one load)")
    ap.add_argument("--worker-quota", type=float, metavar="CORES",
                    help="cap every relay worker thread at CORES of CPU (a cgroup v1 CFS quota "
                    "per thread, 10 ms period; needs a writable /sys/fs/cgroup/cpu). With "
                    "the generator sharing the cores, this is how 1 and 2 workers compare "
                    "at the same CPU budget per worker")
    ap.add_argument("--min-delivery", type=float,
                    help="fail if any delivery ratio is below this (smoke default 0.99)")
    a = ap.parse_args()
    a.duration = a.duration or (2.0 if a.smoke else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (0.5 if a.smoke else 1.0)
    a.sat_duration = a.sat_duration or (1.0 if a.smoke else 4.0)
    if a.scaling_rooms is None:
        a.scaling_rooms = 0 if a.smoke else 12
    if a.wait_quiet is None:
        a.wait_quiet = 0.0 if a.smoke else 30.0
    if a.min_delivery is None and a.smoke:
        a.min_delivery = 0.99
    a.out = a.out or os.path.join(a.build_dir, "bench", "results.json")
    if a.sat_rooms:
        try:
            a.sat_rooms = [int(x) for x in a.sat_rooms.split(",")]
        except ValueError:
            ap.error("--sat-rooms expects numbers separated by commas, e.g. 5,10,20")
    if a.worker_quota is not None and not 0.01 <= a.worker_quota <= 64:
        ap.error("--worker-quota expects a number of cores from 0.01 to 64")
    return a


# ------------------------------------------------------------------ build and tools

def cache_flag(build_dir, name):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            return re.search(r"^%s:BOOL=(ON|TRUE|1)$" % name, f.read(), re.M) is not None
    except OSError:
        return False


def ensure_built(a):
    bins = [os.path.join(a.build_dir, b) for b in ("wzp-relay", "wzp-loadgen", "udp-baseline")]
    if not a.no_build:
        if not os.path.exists(os.path.join(a.build_dir, "CMakeCache.txt")):
            subprocess.run(["cmake", "-S", ROOT, "-B", a.build_dir], check=True,
                           stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", a.build_dir, "-j", str(os.cpu_count() or 2),
                        "--target", "wzp-relay", "wzp-loadgen", "udp-baseline"], check=True,
                       stdout=subprocess.DEVNULL)
    missing = [b for b in bins if not os.access(b, os.X_OK)]
    if missing:
        raise SystemExit("bench: missing programs: %s (build first)" % " ".join(missing))
    return bins


def cpu_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def wait_quiet(max_wait, limit_cores=0.3):
    """Wait until the machine's CPUs are (nearly) idle for a second, at most max_wait s.
    Returns the cores that were busy in the last sample."""
    deadline = time.monotonic() + max_wait
    while True:
        t0, i0 = cpu_ticks()
        time.sleep(1.0)
        t1, i1 = cpu_ticks()
        busy = (1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1)
        if busy <= limit_cores or time.monotonic() >= deadline:
            if busy > limit_cores:
                log("bench: machine still busy (%.2f cores used by others), going on" % busy)
            return busy
        time.sleep(2.0)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the relay

class WorkerQuota:
    """A CPU cap per relay worker thread: one cgroup v1 'cpu' group per thread."""

    ROOT = "/sys/fs/cgroup/cpu"
    PERIOD_US = 10000  # short, so a throttled worker's socket buffer does not overflow

    def __init__(self, cores):
        self.cores = cores
        self.dirs = []

    @staticmethod
    def write(path, value):
        with open(path, "w") as f:
            f.write(str(value))

    def apply(self, pid, nworkers):
        """Put each worker thread (named wzp-worker-N) of pid into its own capped group."""
        deadline = time.monotonic() + 5
        while True:
            tids = []
            for tid in os.listdir("/proc/%d/task" % pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                        if f.read().startswith("wzp-worker"):
                            tids.append(tid)
                except OSError:
                    pass
            if len(tids) >= nworkers or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if len(tids) != nworkers:
            raise RuntimeError("--worker-quota: found %d threads named wzp-worker-* in relay "
                               "%d, expected %d" % (len(tids), pid, nworkers))
        for tid in tids:
            d = os.path.join(self.ROOT, "wzp-bench-%d-%s" % (pid, tid))
            try:
                os.mkdir(d)
                self.dirs.append(d)
                self.write(os.path.join(d, "cpu.cfs_period_us"), self.PERIOD_US)
                self.write(os.path.join(d, "cpu.cfs_quota_us"),
                           max(1000, int(self.cores * self.PERIOD_US)))
                self.write(os.path.join(d, "tasks"), tid)
            except OSError as e:
                raise RuntimeError("--worker-quota needs a writable cgroup v1 cpu controller "
                                   "at %s (run as root): %s" % (self.ROOT, e))

    def release(self):
        """After the relay exited: its groups are empty and can go."""
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.dirs = []


class Relay:
    """One relay process on a fresh port, logging to a file."""

    extra_args = []  # --relay-arg values, for every relay the suite starts
    worker_quota = None  # cores per worker thread (--worker-quota), or None

    def __init__(self, binary, workdir, name, threads, extra=(), cpu=None):
        self.port = free_udp_port()
        safe = re.sub(r"[^A-Za-z0-9.-]", "_", name)
        self.log_path = os.path.join(workdir, "relay-%s.log" % safe)
        args = [binary, "--listen", "127.0.0.1:%d" % self.port,
                "-i", os.path.join(workdir, "identity"), "--threads", str(threads),
                "--max-sessions", "5000", "--max-connections", "20000",
                # every load client comes from 127.0.0.1: per-address limits off
                "--max-handshakes-per-addr", "0", "--max-connections-per-addr", "0"]
        args += Relay.extra_args + list(extra)
        if cpu is not None:
            args = ["taskset", "-c", str(cpu)] + args
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while "listening on" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("relay did not start:\n" + self.text())
            time.sleep(0.02)
        self.quota = None
        if Relay.worker_quota:
            self.quota = WorkerQuota(Relay.worker_quota)
            try:
                self.quota.apply(self.proc.pid, threads)
            except RuntimeError:
                self.stop()
                raise

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.logf.close()
                self.release_quota()
                return None
        self.logf.close()
        self.release_quota()
        return self.proc.returncode

    def release_quota(self):
        if getattr(self, "quota", None):
            self.quota.release()

    def counters(self):
        """Every 'stats:' line of the log, as dicts, in order."""
        out = []
        for line in self.text().splitlines():
            if " stats: " in line or line.endswith(" stats:"):
                out.append({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)})
        return out


def counter_delta(lines, name):
    """Change of a counter between the window-start and window-end lines."""
    if len(lines) < 2 or name not in lines[0]:
        return None
    return lines[1][name] - lines[0][name]


# ------------------------------------------------------------------ runs

def run_json(cmd, timeout, logpath):
    with open(logpath, "a") as err:
        err.write("$ %s\n" % " ".join(cmd))
        err.flush()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout,
                               text=True)
        except subprocess.TimeoutExpired:
            err.write("bench: timed out after %d s\n" % timeout)
            return "timeout", None
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, None


def perf_start(pid, workdir):
    if shutil.which("perf") is None:
        log("bench: perf not found; --perf ignored")
        return None
    data = os.path.join(workdir, "perf-relay.data")
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                          "-p", str(pid), "-o", data], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return p, data


def perf_finish(handle, outdir):
    """Stop perf and write the top libraries and functions to outdir/perf-50x10.txt."""
    p, data = handle
    p.send_signal(signal.SIGINT)
    p.wait(30)
    path = os.path.join(outdir, "perf-50x10.txt")
    with open(path, "w") as out:
        for sort in ("dso", "dso,sym"):
            r = subprocess.run(["perf", "report", "-i", data, "--no-children", "-g", "none",
                                "--percent-limit", "0.7", "--sort", sort], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            out.write("\n".join(l for l in r.stdout.splitlines()
                                if l.strip() and not l.startswith("#")) + "\n\n")
    return path


def media_scenario(a, bins, workdir, name, rooms, parts, speakers, threads, perf=False,
                   duration=None, baseline_run=True, gen_threads=None, gen_sockets=0,
                   opts=None):
    """One loadgen run against a fresh relay, plus the matching raw-UDP run."""
    relay_bin, loadgen, baseline = bins
    opts = opts or {}
    speakers = parts if speakers is None else speakers
    duration = duration or a.duration
    if a.wait_quiet > 0:
        wait_quiet(a.wait_quiet)
    shape = ["--rooms", str(rooms), "--participants", str(parts), "--speakers", str(speakers),
             "--duration", str(duration), "--warmup", str(a.warmup)] + opts.get("shape", [])
    pin = opts.get("pin") and (os.cpu_count() or 1) >= 2
    gen_prefix = ["taskset", "-c", "1"] if pin else []
    relay = Relay(relay_bin, workdir, name, threads, opts.get("relay_args", ()),
                  0 if pin else None)
    handle = perf_start(relay.proc.pid, workdir) if perf else None
    cmd = gen_prefix + [loadgen, "127.0.0.1:%d" % relay.port, "--json", "--threads",
           str(gen_threads or a.gen_threads), "--relay-pid", str(relay.proc.pid),
           "--relay-stats"] + shape
    if gen_sockets:
        cmd += ["--sockets", str(gen_sockets)]
    timeout = 180 + 3 * duration
    try:
        rc, gen = run_json(cmd, timeout, os.path.join(workdir, "loadgen.log"))
    finally:
        perf_path = perf_finish(handle, os.path.dirname(a.out)) if handle else None
        status = relay.stop()
    res = {"name": name, "rooms": rooms, "participants": parts, "speakers": speakers,
           "relay_threads": threads, "options": opts, "pinned": bool(pin), "loadgen_rc": rc, "relay_exit": status, "loadgen": gen,
           "relay_counters": relay.counters()[:2], "relay_log": relay.log_path}
    if perf_path:
        res["perf_report"] = perf_path
    if baseline_run and not a.no_baseline:
        if a.wait_quiet > 0:
            wait_quiet(a.wait_quiet)
        cmd = gen_prefix + [baseline, "--json", "--threads", str(threads)] + shape
        if pin:
            cmd += ["--forwarder-cpu", "0"]
        cmd += poll_every_args(Relay.extra_args + list(opts.get("relay_args", ())))
        res["baseline_rc"], res["baseline"] = run_json(cmd, timeout,
                                                       os.path.join(workdir, "baseline.log"))
    return res


def poll_every_args(relay_args):
    """The relay's --poll-every among its flags (the last one given), for the baseline."""
    value = None
    for i, arg in enumerate(relay_args):
        if arg == "--poll-every" and i + 1 < len(relay_args):
            value = relay_args[i + 1]
        elif arg.startswith("--poll-every="):
            value = arg.split("=", 1)[1]
    return [] if value is None else ["--poll-every", value]


def storm_scenario(a, bins, workdir, joins, concurrency, rooms):
    relay_bin, loadgen, _ = bins
    name = "storm c=%d" % concurrency
    if a.wait_quiet > 0:
        wait_quiet(a.wait_quiet)
    relay = Relay(relay_bin, workdir, name, a.threads)
    cmd = [loadgen, "127.0.0.1:%d" % relay.port, "--json", "--threads", str(a.gen_threads),
           "--storm", str(joins), "--concurrency", str(concurrency), "--rooms", str(rooms),
           "--relay-pid", str(relay.proc.pid), "--join-timeout", "120"]
    try:
        rc, gen = run_json(cmd, 180, os.path.join(workdir, "loadgen.log"))
    finally:
        status = relay.stop()
    return {"name": name, "concurrency": concurrency, "joins": joins, "loadgen_rc": rc,
            "relay_exit": status, "loadgen": gen, "relay_log": relay.log_path}


# ------------------------------------------------------------------ figures

def g(d, *path):
    for k in path:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def div(a, b):
    return a / b if a is not None and b else None


def relay_cpu_s(gen):
    """Relay CPU seconds in the window: the scheduler's ns count when there is one (the
    10 ms ticks of utime+stime are too coarse for light scenarios), else utime+stime."""
    sched = g(gen, "relay", "sched_cpu_s")
    return sched if sched else g(gen, "relay", "cpu_s")


def media_figures(r):
    """The per-scenario figures the table and the JSON summary show."""
    gen, base = r.get("loadgen"), r.get("baseline")
    win = g(gen, "window_s")
    relay_cpu = relay_cpu_s(gen)
    fwd_relay = counter_delta(r["relay_counters"], "datagrams_forwarded")
    tx_pkts = counter_delta(r["relay_counters"], "udp_tx_packets")
    fwd = fwd_relay if fwd_relay else g(gen, "delivered")
    joined = g(gen, "joined")
    rss_end, rss_idle = g(gen, "relay", "rss_end_kb"), g(gen, "relay", "rss_idle_kb")
    f = {
        "delivered_per_s": div(g(gen, "delivered"), win),
        "forwarded_per_s_relay": div(fwd_relay, win),
        "delivery_ratio": g(gen, "delivery_ratio"),
        "relay_cpu_s": relay_cpu,
        "relay_cpu_util": g(gen, "relay", "cpu_util"),
        "relay_cpu_us_per_dgram": div(relay_cpu * 1e6, fwd) if relay_cpu is not None else None,
        "udp_packets_per_dgram": div(tx_pkts, fwd_relay),
        # packets the kernel dropped at the relay's sockets in the window (a worker behind)
        "relay_socket_drops": counter_delta(r["relay_counters"], "packets_socket_overflow"),
        "gen_cpu_s": g(gen, "gen_cpu_s"),
        "machine_busy": g(gen, "machine", "busy"),
        "lat_p50_ms": g(gen, "latency_ms", "p50"), "lat_p90_ms": g(gen, "latency_ms", "p90"),
        "lat_p99_ms": g(gen, "latency_ms", "p99"), "lat_max_ms": g(gen, "latency_ms", "max"),
        "send_lag_p99_ms": g(gen, "send_lag_ms", "p99"),
        "join_p50_ms": g(gen, "join_ms", "p50"), "join_p99_ms": g(gen, "join_ms", "p99"),
        "relay_rss_kb": rss_end,
        "relay_rss_kb_per_participant": div(rss_end - rss_idle, joined)
        if rss_end is not None and rss_idle is not None else None,
        "raw_forwarded_per_s": g(base, "forwarded_per_s"),
        "raw_cpu_us_per_pkt": g(base, "forwarder", "cpu_us_per_pkt"),
        "raw_delivery_ratio": g(base, "delivery_ratio"),
        "raw_lat_p50_ms": g(base, "latency_ms", "p50"),
        "raw_lat_p99_ms": g(base, "latency_ms", "p99"),
    }
    # One-way latency the relay adds over the raw forwarder at the same load (p99).
    f["added_p99_ms"] = (f["lat_p99_ms"] - f["raw_lat_p99_ms"]
                         if None not in (f["lat_p99_ms"], f["raw_lat_p99_ms"]) else None)
    # Forwarded per CPU-second, relay / raw: 1.0 = as cheap as raw UDP fan-out.
    f["efficiency_vs_raw"] = div(f["raw_cpu_us_per_pkt"], f["relay_cpu_us_per_dgram"])
    f["cpu_s_per_million"] = f["relay_cpu_us_per_dgram"]  # same number, other unit
    # Cores used by everything else on the machine during the window (a shared machine
    # is noisy): busy CPUs minus relay and generator time (without IRQ time accounting,
    # softirq work done in a process's context is charged to that process).
    cpus, busy = g(gen, "machine", "cpus"), f["machine_busy"]
    if None not in (cpus, busy, relay_cpu, f["gen_cpu_s"]) and win:
        f["other_cores"] = max(0.0, busy * cpus - (relay_cpu + f["gen_cpu_s"]) / win)
    else:
        f["other_cores"] = None
    # Cross-check: the relay's own count of forwarded datagrams vs what clients received.
    f["relay_count_vs_delivered"] = div(fwd_relay, g(gen, "delivered"))
    return f


def storm_figures(r):
    gen = r.get("loadgen")
    joined, cpu, wall = g(gen, "joined"), relay_cpu_s(gen), g(gen, "storm_wall_s")
    f = {"joins_per_s": g(gen, "joins_per_s"), "joined": joined,
         "failures": g(gen, "join_failures"), "join_p50_ms": g(gen, "join_ms", "p50"),
         "join_p99_ms": g(gen, "join_ms", "p99"),
         "relay_cpu_ms_per_join": div(cpu * 1e3, joined) if cpu is not None else None,
         "relay_cpu_util": div(cpu, wall), "gen_cpu_s": g(gen, "gen_cpu_s"),
         "machine_busy": g(gen, "machine", "busy"), "other_cores": None,
         "gen_per_relay_cpu": div(g(gen, "gen_cpu_s"), cpu)}
    cpus = g(gen, "machine", "cpus")
    if None not in (cpus, f["machine_busy"], cpu, f["gen_cpu_s"]) and wall:
        f["other_cores"] = max(0.0, f["machine_busy"] * cpus - (cpu + f["gen_cpu_s"]) / wall)
    return f


def median_figures(runs):
    """Median of every figure over repeated runs (None where a run had no value)."""
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = statistics.median(vals) if vals else None
    return out


# ------------------------------------------------------------------ checks and output

def check_media(r, min_delivery):
    problems = []
    gen, base = r.get("loadgen"), r.get("baseline")
    if gen is None or r["loadgen_rc"] != 0:
        return ["loadgen failed (exit %s)" % r["loadgen_rc"]]
    if gen["joined"] != gen["clients"]:
        problems.append("%d of %d clients joined (%s)" % (gen["joined"], gen["clients"],
                                                          gen["first_failure"]))
    if gen["misrouted"] or gen["malformed"]:
        problems.append("misrouted %d, malformed %d" % (gen["misrouted"], gen["malformed"]))
    if gen["expected"] == 0 or gen["delivery_ratio"] < min_delivery:
        problems.append("delivery %.4f below %.2f" % (gen["delivery_ratio"], min_delivery))
    if r["relay_exit"] != 0:
        problems.append("relay exit status %s" % r["relay_exit"])
    ratio = r["figures"]["relay_count_vs_delivered"]
    if len(r["relay_counters"]) < 2 or ratio is None:
        problems.append("no relay counters at the window edges")
    elif abs(ratio - 1) > 0.1:
        problems.append("relay counted %.3f x the datagrams clients received" % ratio)
    if "baseline_rc" in r and (base is None or r["baseline_rc"] != 0):
        problems.append("udp-baseline failed (exit %s)" % r["baseline_rc"])
    elif base is not None and base["delivery_ratio"] < min_delivery:
        problems.append("raw-UDP delivery %.4f" % base["delivery_ratio"])
    return problems


def check_storm(r, min_delivery):
    gen = r.get("loadgen")
    if gen is None or r["loadgen_rc"] != 0:
        return ["storm loadgen failed (exit %s)" % r["loadgen_rc"]]
    problems = []
    if gen["joined"] < min_delivery * gen["clients"]:
        problems.append("storm: %d of %d joins (%s)" % (gen["joined"], gen["clients"],
                                                        gen["first_failure"]))
    if r["relay_exit"] != 0:
        problems.append("relay exit status %s" % r["relay_exit"])
    return problems


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_tables(media, storms):
    cols = [("scenario", 12, None, "s"), ("thr", 3, "relay_threads", "d"),
            ("fwd/s", 8, "forwarded_per_s_relay", ".0f"), ("deliv", 7, "delivery_ratio", ".4f"),
            ("cpu us/dg", 9, "relay_cpu_us_per_dgram", ".2f"),
            ("raw us/pk", 9, "raw_cpu_us_per_pkt", ".2f"),
            ("vs raw", 6, "efficiency_vs_raw", ".2f"),
            ("pk/dg", 5, "udp_packets_per_dgram", ".2f"),
            ("p50 ms", 7, "lat_p50_ms", ".3f"), ("p90 ms", 7, "lat_p90_ms", ".3f"),
            ("p99 ms", 7, "lat_p99_ms", ".3f"), ("max ms", 7, "lat_max_ms", ".2f"),
            ("raw p99", 7, "raw_lat_p99_ms", ".3f"), ("RSS MB", 6, "relay_rss_kb", None),
            ("kB/part", 7, "relay_rss_kb_per_participant", ".1f"),
            ("gen/rly", 7, None, None), ("busy", 5, "machine_busy", ".2f"),
            ("other", 5, "other_cores", ".2f")]
    print(" ".join(c[0].rjust(c[1]) for c in cols))
    for m in media:
        f = m["figures"]
        cells = []
        for title, width, key, spec in cols:
            if title == "scenario":
                v = m["name"]
            elif title == "thr":
                v = format(m["relay_threads"], "d")
            elif title == "RSS MB":
                v = fmt(div(f["relay_rss_kb"], 1024), ".1f")
            elif title == "gen/rly":
                v = fmt(div(f["gen_cpu_s"], f["relay_cpu_s"]), ".2f")
            else:
                v = fmt(f.get(key), spec)
            cells.append(v.rjust(width))
        print(" ".join(cells))
    if storms:
        print()
        row = "%-14s %8s %7s %8s %8s %13s %10s %7s %5s %5s"
        print(row % ("storm", "joins/s", "failed", "p50 ms", "p99 ms", "relay ms/join",
                     "relay CPU", "gen/rly", "busy", "other"))
        for s in storms:
            f = s["figures"]
            print(row % (
                s["name"], fmt(f["joins_per_s"], ".0f"), fmt(f["failures"], ".0f"),
                fmt(f["join_p50_ms"], ".1f"), fmt(f["join_p99_ms"], ".1f"),
                fmt(f["relay_cpu_ms_per_join"], ".2f"), fmt(f["relay_cpu_util"], ".2f"),
                fmt(f["gen_per_relay_cpu"], ".2f"),
                fmt(f["machine_busy"], ".2f"), fmt(f["other_cores"], ".2f")))


def machine_info():
    info = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for key in ("Model name", "Hypervisor vendor", "L3 cache"):
            m = re.search(r"^%s:\s*(.+)$" % key, out, re.M)
            if m:
                info[key.lower().replace(" ", "_")] = m.group(1).strip()
    except OSError:
        pass
    return info


# ------------------------------------------------------------------ main

def plan(a):
    scen = list(SMOKE if a.smoke else FULL)
    if not a.smoke and not a.no_compare:
        other = 1 if a.threads != 1 else 2
        scen.append(("50x10 t%d" % other, 50, 10, None, other))
    storm = STORM_SMOKE if a.smoke else STORM_FULL
    if a.only:
        names = a.only.split(",")
        scen = [s for s in scen if s[0] in names or s[0].split(" ")[0] in names]
        storm = storm if "storm" in names else None
    return scen, storm


# Saturation ramp: 10-participant rooms (everyone speaks, 50 packets/s), more rooms per
# step. A step passes when delivery is at least SAT_MIN_DELIVERY and the generator kept
# time (send lag p99 at most SAT_MAX_LAG_MS); the ramp stops at the first failing step.
SAT_ROOMS = [25, 50, 75, 100, 150, 200, 300]
SAT_ROOMS_SMOKE = [4, 8]
SAT_MIN_DELIVERY = 0.999
SAT_MAX_LAG_MS = 10.0


def sat_step_ok(f):
    lag = f.get("send_lag_p99_ms")
    return (f.get("delivery_ratio") or 0) >= SAT_MIN_DELIVERY and (lag is None or
                                                                  lag <= SAT_MAX_LAG_MS)


def saturation(a, bins, workdir, problems):
    """For each relay thread count: ramp the load until a step fails; saturation is the
    forwarded rate of the last passing step. Then one run at half of the default thread
    count's saturation, with the raw baseline, for the latency the relay adds there."""
    threads_list = [a.threads] if a.no_compare else sorted({1, a.threads, 2})
    gen_threads = max(a.gen_threads, 2 if not a.smoke else 1)
    ramps = []
    for threads in ([] if a.half_rooms else threads_list):
        steps, best = [], None
        for rooms in (a.sat_rooms or (SAT_ROOMS_SMOKE if a.smoke else SAT_ROOMS)):
            name = "sat %dx10 t%d" % (rooms, threads)
            log("bench: saturation ramp, %d rooms x 10, relay threads %d" % (rooms, threads))
            r = media_scenario(a, bins, workdir, name, rooms, 10, None, threads,
                               duration=a.sat_duration, baseline_run=False,
                               gen_threads=gen_threads, gen_sockets=a.sat_sockets)
            r["figures"] = f = media_figures(r)
            ok = r["loadgen_rc"] == 0 and sat_step_ok(f)
            steps.append({"rooms": rooms, "ok": ok, "figures": f, "run": r})
            if r["relay_exit"] != 0:
                problems.append("%s: relay exit status %s" % (name, r["relay_exit"]))
            if not ok:
                break
            best = {"rooms": rooms, "forwarded_per_s": f["forwarded_per_s_relay"],
                    "relay_cpu_util": f["relay_cpu_util"], "gen_cpu_s": f["gen_cpu_s"],
                    "relay_cpu_s": f["relay_cpu_s"]}
        last = steps[-1]["figures"] if steps else {}
        ramps.append({"relay_threads": threads, "saturation": best,
                      "limited_by": None if steps and steps[-1]["ok"] else
                      ("delivery %.4f" % (last.get("delivery_ratio") or 0)
                       if (last.get("delivery_ratio") or 0) < SAT_MIN_DELIVERY
                       else "generator send lag p99 %.1f ms" % (last.get("send_lag_p99_ms") or 0)),
                      "steps": steps})
    scaling = None
    if a.scaling_rooms > 0 and not a.half_rooms and not a.no_compare:
        scaling = equal_load_scaling(a, bins, workdir, gen_threads)
    half = None
    main_ramp = next((rp for rp in ramps if rp["relay_threads"] == a.threads), None)
    if a.half_rooms or (main_ramp and main_ramp["saturation"]):
        rooms = a.half_rooms or max(1, round(main_ramp["saturation"]["rooms"] / 2))
        runs = []
        for i in range(a.repeat):
            log("bench: half of saturation: %d rooms x 10 (run %d/%d)" % (rooms, i + 1, a.repeat))
            r = media_scenario(a, bins, workdir, "half-sat %dx10" % rooms, rooms, 10, None,
                               a.threads, gen_threads=gen_threads)
            r["figures"] = media_figures(r)
            problems += ["half-sat: %s" % p for p in check_media(r, a.min_delivery or 0)]
            runs.append(r)
        half = {"name": "half-sat %dx10" % rooms, "rooms": rooms, "relay_threads": a.threads,
                "figures": median_figures([r["figures"] for r in runs]), "runs": runs}
    return {"ramps": ramps, "half": half, "scaling": scaling, "gen_threads": gen_threads,
            "worker_quota_cores": a.worker_quota}


def scaling_figures(runs):
    """Medians per configuration. c = the relay's CPU per forwarded datagram; 2 x c(1 worker)
    / c(2 workers) is what 2 workers forward for one worker's CPU budget each. Two loads
    bracket it: the same total (each of 2 workers has half the load; per-datagram costs
    rise as load falls: fewer packets per wake-up) and the same per worker (the machine is
    busier; costs fall)."""
    med = {k: median_figures([media_figures(r) for r in rs]) for k, rs in runs.items()}
    c1 = med["t1"]["relay_cpu_us_per_dgram"]
    out = dict(med)
    for k in ("same_total", "same_each"):
        c2 = med[k]["relay_cpu_us_per_dgram"]
        out["scaling_" + k] = 2 * c1 / c2 if c1 and c2 else None
    return out


SCALING_CONFIGS = (("t1", 1, 1), ("same_total", 2, 1), ("same_each", 2, 2))


def equal_load_scaling(a, bins, workdir, gen_threads):
    """N rooms on one worker, N and 2N on two, without --worker-quota (a CFS quota holds a
    worker off its core for most of each period, which changes the work itself: datagrams
    that wait share packets), alternated."""
    rooms, quota = a.scaling_rooms, Relay.worker_quota
    runs = {key: [] for key, _, _ in SCALING_CONFIGS}
    Relay.worker_quota = None
    try:
        for i in range(a.scaling_repeat):
            for key, threads, mult in SCALING_CONFIGS:
                name = "scaling %dx10 t%d" % (rooms * mult, threads)
                log("bench: %s (run %d/%d)" % (name, i + 1, a.scaling_repeat))
                runs[key].append(media_scenario(
                    a, bins, workdir, name, rooms * mult, 10, None, threads,
                    baseline_run=False, gen_threads=gen_threads))
    finally:
        Relay.worker_quota = quota
    return {"rooms": rooms, "runs": runs, "figures": scaling_figures(runs)}


def print_saturation(sat):
    if not sat:
        return
    print()
    print("saturation: 10-participant rooms, more rooms per step; a step passes with delivery "
          ">= %.3f and generator send lag p99 <= %.0f ms" % (SAT_MIN_DELIVERY, SAT_MAX_LAG_MS))
    if sat.get("worker_quota_cores"):
        print("every relay worker thread capped at %.2f of a core (--worker-quota)"
              % sat["worker_quota_cores"])
    row = "%-4s %6s %10s %11s %8s  %s"
    print(row % ("thr", "rooms", "fwd/s", "relay cores", "gen/rly", "stopped by"))
    for rp in sat["ramps"]:
        best = rp["saturation"] or {}
        print(row % (rp["relay_threads"], fmt(best.get("rooms"), "d"),
                     fmt(best.get("forwarded_per_s"), ".0f"),
                     fmt(best.get("relay_cpu_util"), ".2f"),
                     fmt(div(best.get("gen_cpu_s"), best.get("relay_cpu_s")), ".2f"),
                     rp["limited_by"] or "end of the ramp"))
        print("     steps: " + ", ".join(
            "%d rooms %s/s %s%s%s" % (
                st["rooms"], fmt(st["figures"]["forwarded_per_s_relay"], ".0f"),
                fmt(st["figures"]["delivery_ratio"], ".4f"),
                " (%s dropped at the relay's sockets)" % fmt(st["figures"].get("relay_socket_drops"), "d")
                if st["figures"].get("relay_socket_drops") else "",
                "" if st["ok"] else " (fail)") for st in rp["steps"]))
    sc = sat.get("scaling")
    if sc:
        f = sc["figures"]
        print("1 vs 2 workers without a quota (%d alternated runs; relay CPU per datagram, "
              "median (runs), udp packets per datagram):" % len(sc["runs"]["t1"]))
        for key, threads, mult in SCALING_CONFIGS:
            print("  %2d rooms x 10 on %d worker%s: %s us (%s), %s" % (
                sc["rooms"] * mult, threads, "s" if threads > 1 else " ",
                fmt(f[key]["relay_cpu_us_per_dgram"], ".2f"),
                ", ".join(fmt(media_figures(r)["relay_cpu_us_per_dgram"], ".2f")
                          for r in sc["runs"][key]),
                fmt(f[key]["udp_packets_per_dgram"], ".2f")))
        print("  2 workers forward %s-%sx of one at an equal CPU budget (same total load - same "
              "load per worker)" % (fmt(f["scaling_same_total"], ".2f"),
                                    fmt(f["scaling_same_each"], ".2f")))
    h = sat.get("half")
    if h:
        f = h["figures"]
        print("half of saturation, %s on %d relay threads: fwd/s %s, delivery %s, latency p50 %s "
              "p99 %s ms, raw UDP p99 %s ms, added p99 %s ms" % (
                  h["name"], h["relay_threads"], fmt(f["forwarded_per_s_relay"], ".0f"),
                  fmt(f["delivery_ratio"], ".4f"), fmt(f["lat_p50_ms"], ".3f"),
                  fmt(f["lat_p99_ms"], ".3f"), fmt(f["raw_lat_p99_ms"], ".3f"),
                  fmt(f["added_p99_ms"], ".3f")))


def run_all(a, bins, workdir):
    scen, storm = plan(a)
    media, storms, problems = [], [], []
    for name, rooms, parts, speakers, threads, *more in scen:
        runs = []
        for i in range(a.repeat):
            log("bench: %s (run %d/%d)" % (name, i + 1, a.repeat))
            r = media_scenario(a, bins, workdir, name, rooms, parts, speakers,
                               threads or a.threads, opts=more[0] if more else None)
            r["figures"] = media_figures(r)
            problems += ["%s: %s" % (name, p) for p in check_media(r, a.min_delivery or 0)]
            runs.append(r)
        media.append({"name": name, "relay_threads": runs[0]["relay_threads"],
                      "figures": median_figures([r["figures"] for r in runs]), "runs": runs})
    if a.perf:  # an extra 50x10 run under perf, not counted in the figures
        log("bench: 50x10 under perf record")
        r = media_scenario(a, bins, workdir, "50x10 perf", 50, 10, None, a.threads, perf=True)
        media_perf = r.get("perf_report")
        if media_perf:
            log("bench: relay profile in %s" % media_perf)
    for level in (storm["levels"] if storm else []):
        runs = []
        for i in range(a.repeat):
            log("bench: storm, concurrency %d (run %d/%d)" % (level, i + 1, a.repeat))
            r = storm_scenario(a, bins, workdir, storm["joins"], level, storm["rooms"])
            r["figures"] = storm_figures(r)
            problems += ["%s: %s" % (r["name"], p) for p in check_storm(r, a.min_delivery or 0)]
            runs.append(r)
        storms.append({"name": runs[0]["name"], "concurrency": level,
                       "figures": median_figures([r["figures"] for r in runs]), "runs": runs})
    sat = None
    if a.saturation and (not a.only or "sat" in a.only.split(",")):
        sat = saturation(a, bins, workdir, problems)
    return media, storms, sat, problems


def reprint(path):
    """Recompute the figures of a results file from its raw runs and print the tables."""
    with open(path) as f:
        doc = json.load(f)
    for group, figures in ((doc["scenarios"], media_figures), (doc["storm"], storm_figures)):
        for sc in group:
            sc["figures"] = median_figures([figures(r) for r in sc["runs"]])
    print_tables(doc["scenarios"], doc["storm"])
    sat = doc.get("saturation")
    if sat:
        for rp in sat["ramps"]:
            for st in rp["steps"]:
                st["figures"] = media_figures(st["run"])
        if sat.get("half"):
            sat["half"]["figures"] = median_figures([media_figures(r)
                                                     for r in sat["half"]["runs"]])
        if sat.get("scaling"):
            sat["scaling"]["figures"] = scaling_figures(sat["scaling"]["runs"])
    print_saturation(sat)
    return 0


def main():
    a = parse_args()
    Relay.extra_args = a.relay_arg
    Relay.worker_quota = a.worker_quota
    if a.report:
        return reprint(a.report)
    if cache_flag(a.build_dir, "WZP_TSAN"):
        log("bench: %s is a ThreadSanitizer build: the relay is too slow there for the load "
            "to mean anything, so the benchmark skips itself" % a.build_dir)
        return SKIP
    if cache_flag(a.build_dir, "WZP_ASAN"):
        if not a.smoke:
            log("bench: %s is an AddressSanitizer build: only --smoke runs there" % a.build_dir)
            return SKIP
        log("bench: AddressSanitizer build: functional smoke only, timings are meaningless")
    bins = ensure_built(a)
    workdir = os.path.join(os.path.dirname(a.out), "logs")  # relay logs, identity
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    t0 = time.time()
    media, storms, sat, problems = run_all(a, bins, workdir)
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
           "mode": "smoke" if a.smoke else "full", "duration_s": a.duration,
           "warmup_s": a.warmup, "repeat": a.repeat, "relay_threads": a.threads,
           "gen_threads": a.gen_threads, "worker_quota_cores": a.worker_quota,
           "relay_args": a.relay_arg, "machine": machine_info(), "scenarios": media,
           "storm": storms, "saturation": sat, "problems": problems, "elapsed_s": round(time.time() - t0, 1)}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print_tables(media, storms)
    print_saturation(sat)
    print("\nresults: %s (logs in %s); %.0f s" % (a.out, workdir, time.time() - t0))
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
