#!/bin/sh
# Build the GnuTLS the relay links: Debian's own source package for the version Debian
# ships now (its security patches included), plus allow-underscore-in-server-names.patch,
# library only, into a cache directory that every build tree reuses. Prints the install
# prefix on stdout (everything else goes to stderr).
#
#   scripts/gnutls/build.sh            # fetch, build once, print the prefix
#
# The prefix is named after the Debian version and the patch's hash, so a new Debian
# security release, or a changed patch, builds a new one; an existing one is reused at
# once. Cache directory: $WZP_CACHE_DIR, default /var/cache/wzp-relay. Needs the packages
# scripts/bootstrap.sh installs (dpkg-dev, autoconf, automake, libtool, autopoint,
# gettext, libtasn1-6-dev, libunistring-dev, libgmp-dev, nettle-dev). The system's apt
# configuration is left alone: the source index lives in a private directory.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PATCH=$HERE/allow-underscore-in-server-names.patch
CACHE=${WZP_CACHE_DIR:-/var/cache/wzp-relay}
log() { echo "gnutls: $*" >&2; }

mkdir -p "$CACHE/apt/parts" "$CACHE/apt/lists/partial"
# The same mirror as the system's (Debian's own); bookworm-security first, so that a
# security release wins over the point release.
cat >"$CACHE/apt/parts/wzp-gnutls-src.sources" <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
APT="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$CACHE/apt/parts"
APT="$APT -o Dir::State::Lists=$CACHE/apt/lists -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get $APT -qq update >&2 || log "source index update failed; using the cached one"
# shellcheck disable=SC2086
VERSION=$(apt-get $APT -qq source --print-uris gnutls28 2>/dev/null |
    sed -n "s/.*gnutls28_\([^ ']*\)\.dsc.*/\1/p" | head -1)
if [ -z "$VERSION" ]; then
    log "cannot find Debian's gnutls28 source package (network? $CACHE/apt)"
    exit 1
fi
HASH=$(sha256sum "$PATCH" | cut -c1-12)
PREFIX=$CACHE/gnutls-$VERSION-$HASH
if [ -f "$PREFIX/.complete" ]; then
    log "reusing $PREFIX"
    echo "$PREFIX"
    exit 0
fi

START=$(date +%s)
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
log "fetching gnutls28 $VERSION"
# shellcheck disable=SC2086
apt-get $APT -qq source --download-only gnutls28="$VERSION" >&2
# dpkg-source unpacks and applies Debian's patch series (its security fixes).
dpkg-source -x ./*.dsc src >&2
cd src
patch -p1 <"$PATCH" >&2
# Debian's series changes gnulib modules: regenerate the build system as Debian does
# (without gtk-doc: the documentation is not built).
log "regenerating the build system"
GTKDOCIZE=true autoreconf -fi >"$WORK/autoreconf.log" 2>&1 ||
    { tail -20 "$WORK/autoreconf.log" >&2; exit 1; }
log "configuring (library only)"
./configure --prefix="$PREFIX" --disable-doc --disable-tests --disable-tools \
    --disable-cxx --disable-guile --without-p11-kit --without-idn --without-tpm \
    --without-tpm2 --disable-nls --without-zlib --without-brotli --without-zstd \
    --disable-static --disable-full-test-suite --disable-gtk-doc \
    >"$WORK/configure.log" 2>&1 || { tail -20 "$WORK/configure.log" >&2; exit 1; }
JOBS=$(nproc 2>/dev/null || echo 2)
log "building with $JOBS jobs"
make -s -j"$JOBS" -C gl >/dev/null
make -s -j"$JOBS" -C lib >/dev/null
rm -rf "$PREFIX"
make -s -C lib install >/dev/null
touch "$PREFIX/.complete"
log "built $PREFIX in $(($(date +%s) - START)) s"
echo "$PREFIX"
