#!/usr/bin/env bash
# Interop test: the real wzp-relay binary against quinn clients (tests/interop, Rust).
#
#   tests/interop/run.sh RELAY_BINARY [relay options...]     e.g. run.sh build/wzp-relay --threads 1
#
# Builds wzp-interop offline from Debian's crate packages (cargo build --release --offline;
# output in tests/interop/target unless CARGO_TARGET_DIR says otherwise), starts the relay
# on a free loopback UDP port with a throw-away identity, runs the scenarios, then stops the
# relay with SIGTERM and requires exit status 0 within 3 s.
#
# Environment: CARGO (default: cargo), WZP_INTEROP_SCENARIOS (default: "fanout shared churn"
# where "shared" is fanout with all clients on one UDP socket; also available: "signal",
# presence and direct calls on "_signal" connections, which only a relay built with the
# patched GnuTLS serves, so the build adds it; "selftest"), WZP_INTEROP_ARGS (extra
# arguments for wzp-interop, e.g. -v).
# Exit status: 0 pass, 1 fail (the relay log is printed), 77 skip (no cargo).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
RELAY=${1:-}
if [ -z "$RELAY" ]; then
    echo "usage: $0 RELAY_BINARY [relay options...]" >&2
    exit 2
fi
shift
RELAY_ARGS=("$@")
case $RELAY in /*) ;; *) RELAY=$(pwd)/$RELAY ;; esac
if [ ! -x "$RELAY" ]; then
    echo "interop: relay binary $RELAY not found or not executable" >&2
    exit 1
fi

CARGO=${CARGO:-cargo}
if ! command -v "$CARGO" >/dev/null 2>&1; then
    echo "interop: SKIP: cargo not found (install Debian's cargo and rustc," \
        "plus librust-quinn-dev librust-tokio-dev librust-rustls-dev librust-serde-json-dev)"
    exit 77
fi

# --- build the client (cargo does nothing when it is up to date) -----------------------
echo "interop: building wzp-interop with $("$CARGO" --version 2>/dev/null)"
if ! (cd "$HERE" && "$CARGO" build --release --offline --quiet); then
    echo "interop: FAIL: building wzp-interop failed. It needs Debian's crate packages:" \
        "apt-get install librust-quinn-dev librust-tokio-dev librust-rustls-dev librust-serde-json-dev"
    exit 1
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$HERE/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$HERE/$TARGET_DIR ;; esac
CLIENT=$TARGET_DIR/release/wzp-interop
if [ ! -x "$CLIENT" ]; then
    echo "interop: FAIL: $CLIENT was not built"
    exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wzp-interop.XXXXXX")
RELAY_PID=""
cleanup() {
    if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill -KILL "$RELAY_PID" 2>/dev/null
        wait "$RELAY_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "interop: FAIL: $*"
    echo "----- relay log ($RELAY --listen 127.0.0.1:${PORT:-?} -i ID --log-level debug ${RELAY_ARGS[*]}) -----"
    cat "$TMP/relay.log" 2>/dev/null
    echo "----- end of relay log -----"
    exit 1
}

# UDP ports bound on this machine, from /proc (no extra tools needed).
udp_port_in_use() {
    local hexport
    hexport=$(printf '%04X' "$1")
    cat /proc/net/udp /proc/net/udp6 2>/dev/null |
        awk -v p=":$hexport" 'NR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }'
}

pick_port() {
    local i port
    for i in $(seq 1 50); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! udp_port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# --- start the relay ---------------------------------------------------------------------
# The relay binds with SO_REUSEPORT, so a port clash does not make it fail: check first.
PORT=$(pick_port) || fail "no free UDP port found"
"$RELAY" --listen "127.0.0.1:$PORT" -i "$TMP/id" --log-level debug "$@" 2>"$TMP/relay.log" &
RELAY_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on udp" "$TMP/relay.log" 2>/dev/null && break
    kill -0 "$RELAY_PID" 2>/dev/null || break
    sleep 0.05
done
if ! grep -q "listening on udp" "$TMP/relay.log" 2>/dev/null; then
    if kill -0 "$RELAY_PID" 2>/dev/null; then
        fail "relay did not log \"listening on udp\" within 5 s"
    fi
    wait "$RELAY_PID"
    rc=$?
    RELAY_PID=""
    fail "relay exited with status $rc before listening"
fi
RELAY_FP=$(sed -n 's/.*identity fingerprint \([0-9a-f:]\{39\}\).*/\1/p' "$TMP/relay.log" | head -n 1)
FP_ARGS=()
[ -n "$RELAY_FP" ] && FP_ARGS=(--relay-fingerprint "$RELAY_FP")
echo "interop: relay pid $RELAY_PID on 127.0.0.1:$PORT ${*:+(options: $*)}"

# --- scenarios ---------------------------------------------------------------------------
# shellcheck disable=SC2206
EXTRA=(${WZP_INTEROP_ARGS:-})
for scenario in ${WZP_INTEROP_SCENARIOS:-fanout shared churn}; do
    case $scenario in
    fanout) args=(fanout) ;;
    shared) args=(fanout --shared-endpoint) ;;
    *) args=("$scenario") ;;
    esac
    echo "interop: === scenario $scenario ==="
    "$CLIENT" --addr "127.0.0.1:$PORT" "${FP_ARGS[@]}" "${EXTRA[@]}" "${args[@]}"
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "scenario $scenario: wzp-interop exited with status $rc"
    fi
    kill -0 "$RELAY_PID" 2>/dev/null || fail "relay died during scenario $scenario"
done

# --- stop the relay: SIGTERM must end it with status 0 within 3 s ------------------------
kill -TERM "$RELAY_PID"
for _ in $(seq 1 30); do
    kill -0 "$RELAY_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$RELAY_PID" 2>/dev/null; then
    fail "relay still running 3 s after SIGTERM"
fi
wait "$RELAY_PID"
rc=$?
RELAY_PID=""
[ $rc -eq 0 ] || fail "relay exited with status $rc after SIGTERM (expected 0)"
if grep -E "ERROR|AddressSanitizer|runtime error|ThreadSanitizer" "$TMP/relay.log" >/dev/null; then
    fail "relay log contains errors or sanitizer reports"
fi
echo "interop: PASS (relay exited 0 after SIGTERM)"
exit 0
