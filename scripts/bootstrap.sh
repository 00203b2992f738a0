#!/bin/sh
# bootstrap.sh - install dependencies (Debian 12), build, then run the relay or the tests.
#
#   scripts/bootstrap.sh run [relay options]   build and start the relay on defaults
#   scripts/bootstrap.sh test                  build normal, ASan/UBSan and TSan trees and
#                                              run the whole test suite in each; build
#                                              Release (gcc) and Debug (clang) trees and run
#                                              their unit tests; run each fuzzer briefly
#
# Needs root for apt-get (it is skipped when every package is already installed).
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc 2>/dev/null || echo 2)

PACKAGES="build-essential cmake pkg-config git libev-dev libngtcp2-dev \
libngtcp2-crypto-gnutls-dev libgnutls28-dev nettle-dev libluajit-5.1-dev libjansson-dev \
libsodium-dev libcriterion-dev libmicrohttpd-dev libcurl4-gnutls-dev gnutls-bin python3 clang libclang-rt-14-dev \
dpkg-dev autoconf automake libtool autopoint gettext libtasn1-6-dev libunistring-dev \
libgmp-dev"
# The last line builds GnuTLS from Debian's source with the patch that lets WZP's reserved
# server names ("_signal") through (scripts/gnutls/build.sh, once, cached). Set
# WZP_SYSTEM_GNUTLS=1 to build against the system's GnuTLS instead (the relay then
# refuses those names in the TLS handshake and says so at start).
# quinn (Rust) from Debian's crate packages, for the interop test against the stack real
# clients use. cargo/rustc come from Debian's rust toolchain if no other is installed.
INTEROP_PACKAGES="librust-quinn-dev librust-tokio-dev librust-rustls-dev librust-serde-json-dev"
# Headless Chromium for the status page's browser test (tests only).
BROWSER_PACKAGES="chromium"

install_packages() {
    missing=""
    for p in $PACKAGES "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing="$missing $p"
    done
    if ! command -v cargo >/dev/null 2>&1; then
        missing="$missing cargo rustc"
    fi
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing packages:$missing" >&2
        echo "bootstrap: run as root (or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "bootstrap: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}

GNUTLS_PREFIX=""
gnutls() { # the patched GnuTLS, built once into the cache (or the system's)
    if [ "${WZP_SYSTEM_GNUTLS:-0}" = 1 ]; then
        echo "bootstrap: building against the system's GnuTLS (WZP_SYSTEM_GNUTLS=1)"
        return 0
    fi
    if [ -z "${WZP_CACHE_DIR:-}" ] && ! mkdir -p /var/cache/wzp-relay 2>/dev/null; then
        WZP_CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/wzp-relay
        export WZP_CACHE_DIR
    fi
    GNUTLS_PREFIX=$("$ROOT/scripts/gnutls/build.sh")
}

build() { # build DIR [cmake options]
    dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DWZP_GNUTLS_PREFIX="$GNUTLS_PREFIX" "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS" ${TARGET:+--target "$TARGET"}
}

run_tests() { # run_tests DIR LABEL [ctest options]
    dir=$1 label=$2
    shift 2
    echo "=== tests: $label ==="
    (cd "$dir" && ctest --output-on-failure --timeout 600 -j "$JOBS" "$@")
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
    install_packages
    gnutls
    build "$ROOT/build"
    exec "$ROOT/build/wzp-relay" "$@"
    ;;
test)
    install_packages $INTEROP_PACKAGES $BROWSER_PACKAGES
    export WZP_REQUIRE_BROWSER=1 # the browser test must run, not skip
    gnutls
    build "$ROOT/build"
    run_tests "$ROOT/build" "release"
    build "$ROOT/build-asan" -DWZP_ASAN=ON
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_tests "$ROOT/build-asan" "ASan+UBSan"
    build "$ROOT/build-tsan" -DWZP_TSAN=ON
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        run_tests "$ROOT/build-tsan" "TSan"
    # Other build types and compilers must build warning-free too (-O3 and clang warn
    # about things -O2 gcc does not); their unit tests are quick.
    build "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release
    run_tests "$ROOT/build-release" "Release (gcc -O3), unit" -L unit
    build "$ROOT/build-clang" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang
    run_tests "$ROOT/build-clang" "Debug (clang), unit" -L unit
    echo "=== fuzz smoke (libFuzzer, ${FUZZ_SECONDS:-15} s per parser) ==="
    TARGET=fuzzers build "$ROOT/build-fuzz" -DWZP_FUZZ=ON -DWZP_TESTS=OFF \
        -DCMAKE_C_COMPILER=clang
    for f in "$ROOT"/build-fuzz/fuzz_*; do
        name=$(basename "$f" | sed 's/^fuzz_//')
        work=$(mktemp -d)
        cp "$ROOT/tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
        "$f" -max_total_time="${FUZZ_SECONDS:-15}" -max_len=4096 "$work" >"$work.log" 2>&1 \
            || { tail -40 "$work.log"; exit 1; }
        grep -h "^Done" "$work.log"
        rm -rf "$work" "$work.log"
    done
    echo "=== all test suites passed ==="
    ;;
*)
    echo "usage: $0 run [relay options] | test" >&2
    exit 2
    ;;
esac
