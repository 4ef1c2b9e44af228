#!/bin/sh
# Builds tests/usage/app.c the two ways README ("Building against coring")
# tells a user to, and runs each program:
#   1. against this build tree, uninstalled: inside `meson devenv`, with the
#      uninstalled pkg-config file (coring-uninstalled.pc);
#   2. against an installation: `meson install --destdir` into a temporary
#      root, then pkg-config on the installed coring.pc with its prefix moved
#      to that root (--define-variable), and an rpath to the library.
# usage: build_against.sh BUILD_DIR SOURCE_DIR CC
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
want="coring $(sed -n 's/^#define COR_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' "$src/include/coring/version.h" |
    awk '{v = v * 100 + $1} END {print v}'): 42"

# 1. The build tree, through meson devenv (PKG_CONFIG_PATH and LD_LIBRARY_PATH set by meson).
meson devenv -C "$build" sh -c '
    set -eu
    '"$cc"' -o "$1/app_devenv" "$2/tests/usage/app.c" $(pkg-config --cflags --libs coring)
    "$1/app_devenv"' sh "$tmp" "$src" >"$tmp/out1"
grep -qx "$want" "$tmp/out1" || { echo "devenv: got '$(cat "$tmp/out1")', want '$want'"; exit 1; }
echo "build tree (meson devenv): $(cat "$tmp/out1")"

# 2. An installation in a temporary root.
meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet >/dev/null
pc=$(find "$tmp/root" -name coring.pc | head -n 1)
[ -n "$pc" ] || { echo "no coring.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
prefix="$tmp/root$(pkg-config --variable=prefix coring)"
libdir=$(pkg-config --define-variable=prefix="$prefix" --variable=libdir coring)
$cc -o "$tmp/app_installed" "$src/tests/usage/app.c" \
    $(pkg-config --define-variable=prefix="$prefix" --cflags --libs coring) -Wl,-rpath,"$libdir"
"$tmp/app_installed" >"$tmp/out2"
grep -qx "$want" "$tmp/out2" || { echo "installed: got '$(cat "$tmp/out2")', want '$want'"; exit 1; }
echo "installed (pkg-config): $(cat "$tmp/out2")"
