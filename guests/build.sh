#!/bin/sh
# Builds the test and demo guests from source:
#   build/<name>.wasm       clang --target=wasm32-wasi -O2 with Debian's wasi-libc
#   build/<name>-native     gcc -O2 (kvserver, compress: physical baselines)
#   build/<name>.wasm       from <name>.wat, when the wat files are needed (tests use the `wat` crate)
# Needs Debian packages: clang lld wasi-libc libclang-rt-14-dev-wasm32 (and gcc).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/build"
mkdir -p "$out"

missing=""
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v wasm-ld >/dev/null 2>&1 || missing="$missing lld"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
sysroot=""
for d in /usr/share/wasi-sysroot /usr/lib/wasi-sysroot /usr; do
    if [ -f "$d/lib/wasm32-wasi/libc.a" ] || [ -f "$d/lib/wasm32-wasi/crt1-command.o" ]; then sysroot="$d"; break; fi
done
[ -n "$sysroot" ] || missing="$missing wasi-libc"
if [ -z "$(find /usr/lib/llvm-*/lib/clang/*/lib/wasi -name 'libclang_rt.builtins-wasm32.a' 2>/dev/null | head -n1)" ]; then
    missing="$missing libclang-rt-14-dev-wasm32"
fi
if [ -n "$missing" ]; then
    echo "guests/build.sh: missing tools; install the Debian packages:$missing" >&2
    echo "  apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32 gcc" >&2
    exit 3
fi

build_wasm() {
    name=$1
    src="$here/$name.c"
    dst="$out/$name.wasm"
    if [ ! -f "$dst" ] || [ "$src" -nt "$dst" ] || [ "$0" -nt "$dst" ]; then
        clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -Wall -Wextra -Werror -o "$dst.tmp.$$" "$src"
        mv "$dst.tmp.$$" "$dst"
    fi
}

build_native() {
    name=$1
    src="$here/$name.c"
    dst="$out/$name-native"
    if [ ! -f "$dst" ] || [ "$src" -nt "$dst" ] || [ "$0" -nt "$dst" ]; then
        gcc -O2 -Wall -Wextra -Werror -o "$dst.tmp.$$" "$src"
        mv "$dst.tmp.$$" "$dst"
    fi
}

for g in kvserver clockrand compress lineserver blockserver fsprobe; do build_wasm "$g"; done
for g in kvserver compress lineserver; do build_native "$g"; done
echo "guests built in $out"
