#!/usr/bin/env python3
"""Where the relay's CPU goes, by kind of work, from a perf profile.

    perf record -e cpu-clock -F 1500 --call-graph dwarf -p RELAY_PID -o perf.data -- sleep 5
    tests/bench/breakdown.py perf.data [--per-unit US]

Each sample is put in one category by its call stack (kernel system call first, then
crypto, then ngtcp2 by the entry point it was called from, then the relay's own code).
With --per-unit US (the run's relay CPU microseconds per delivered datagram) the shares
are also printed as microseconds per delivered datagram. Standard library only.
"""
import argparse
import collections
import subprocess
import sys

CATEGORIES = [
    ("kernel-send", "kernel: sendmmsg (on loopback it includes delivery into the receiving socket)"),
    ("kernel-recv", "kernel: recvmmsg"),
    ("kernel-wait", "kernel: epoll_wait (sleeping, waking)"),
    ("kernel-other", "kernel: other (interrupts, timers, scheduler)"),
    ("crypto-rx", "crypto: decrypt + header protection, received packets"),
    ("crypto-tx", "crypto: encrypt + header protection, sent packets"),
    ("ngtcp2-read", "ngtcp2: reading packets (frames, ACK processing, loss/RTT/congestion)"),
    ("ngtcp2-write", "ngtcp2: building packets"),
    ("ngtcp2-timer", "ngtcp2: expiry queries and timer handling"),
    ("ngtcp2-other", "ngtcp2: other"),
    ("relay-fanout", "relay: fan-out (room lookup, queueing to receivers)"),
    ("relay-io", "relay: I/O loop, CID lookup, timers, clock (incl. libc, libev)"),
]

CRYPTO_DSOS = ("libgnutls", "libnettle", "libhogweed", "libngtcp2_crypto")
# The relay's own packet protection (core/net/aead.c, tls.c): its AES-GCM and header
# protection, entered through these ngtcp2 callbacks.
OWN_CRYPTO = ("wzp_tls_encrypt", "wzp_tls_decrypt", "wzp_tls_hp_mask", "wzp_aead_seal",
              "wzp_aead_open")


def classify(frames):
    """frames: [(sym, dso)] from the leaf to the root."""
    syms = [s for s, _ in frames]
    for s in syms:
        if s.startswith("__x64_sys_") or s.startswith("__do_sys_"):
            if "sendmmsg" in s or "sendmsg" in s:
                return "kernel-send"
            if "recvmmsg" in s or "recvmsg" in s:
                return "kernel-recv"
            if "epoll_wait" in s:
                return "kernel-wait"
    leaf_sym, leaf_dso = frames[0] if frames else ("?", "?")
    if "kernel" in leaf_dso:
        return "kernel-other"
    if (any(c in leaf_dso for c in CRYPTO_DSOS) or "ngtcp2_crypto" in leaf_sym or
            any(s in OWN_CRYPTO for s in syms)):
        return "crypto-rx" if any("read_pkt" in s for s in syms) else "crypto-tx"
    if "libngtcp2" in leaf_dso:
        for s in syms:
            if "ngtcp2_conn_read_pkt" in s:
                return "ngtcp2-read"
            if "ngtcp2_conn_write" in s:
                return "ngtcp2-write"
            if "expiry" in s:
                return "ngtcp2-timer"
        return "ngtcp2-other"
    if any(s.startswith("wzp_sfu_") for s in syms):
        return "relay-fanout"
    return "relay-io"


def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    frames = []
    for line in out.splitlines() + [""]:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        dso = rest[rest.rfind("(") + 1:-1] if rest.endswith(")") else "?"
        sym = rest[:rest.rfind("(")].strip() if "(" in rest else rest
        sym = sym.split("+0x")[0]
        frames.append((sym, dso))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="perf.data recorded with --call-graph dwarf")
    ap.add_argument("--per-unit", type=float, metavar="US",
                    help="relay CPU us per delivered datagram in that run")
    a = ap.parse_args()
    counts = collections.Counter(classify(f) for f in samples(a.data))
    total = sum(counts.values())
    if not total:
        print("no samples in %s" % a.data, file=sys.stderr)
        return 1
    print("%-78s %6s %s" % ("category (%d samples)" % total, "share",
                            "us/dg" if a.per_unit else ""))
    for key, label in CATEGORIES:
        share = counts[key] / total
        us = " %5.2f" % (share * a.per_unit) if a.per_unit else ""
        print("%-78s %5.1f%%%s" % (label, 100 * share, us))
    return 0


if __name__ == "__main__":
    sys.exit(main())
