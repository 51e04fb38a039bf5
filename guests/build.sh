#!/bin/sh
# Builds the test and demo guests from source:
#   build/<name>.wasm       clang --target=wasm32-wasi -O2 with Debian's wasi-libc
#   build/<name>-native     gcc -O2 (kvserver, compress: physical baselines)
#   build/<name>.wasm       from <name>.wat, when the wat files are needed (tests use the `wat` crate)
#   build/sqlserver.wasm, build/sqlserver-native: with SQLite, whose amalgamation
#                           (sqlite3.c, sqlite3.h) comes from a pinned version of the
#                           libsqlite3-sys crate, checked against pinned sha256 sums and
#                           kept in build/sqlite/ with its compiled objects
# Needs Debian packages: clang lld wasi-libc libclang-rt-14-dev-wasm32 (and gcc),
# and cargo (to fetch the crate when it is not in cargo's cache yet).
#
#   sh guests/build.sh --prebuilt [DIR]
# builds only the guests shipped inside the understudy binary (kvserver.wasm,
# for `understudy demo`) into DIR (default guests/prebuilt, which is
# committed), reproducibly: without debug sections (wasi-libc's carry its
# build paths) and with source paths mapped, so the bytes depend only on the
# sources and the toolchain's versions. `cargo test --test prebuilt_guest`
# checks the committed bytes against such a rebuild.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prebuilt=""
if [ "${1:-}" = "--prebuilt" ]; then
    prebuilt="${2:-$here/prebuilt}"
fi
out="$here/build"
[ -n "$prebuilt" ] || mkdir -p "$out"

missing=""
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v wasm-ld >/dev/null 2>&1 || missing="$missing lld"
[ -n "$prebuilt" ] || command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
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

if [ -n "$prebuilt" ]; then
    mkdir -p "$prebuilt"
    for name in kvserver; do
        dst="$prebuilt/$name.wasm"
        clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -Wall -Wextra -Werror -ffile-prefix-map="$here"=guests \
            -Wl,--strip-debug -o "$dst.tmp.$$" "$here/$name.c"
        mv "$dst.tmp.$$" "$dst"
        echo "$dst: $(wc -c <"$dst") bytes, sha256 $(sha256sum "$dst" | cut -d' ' -f1)"
    done
    exit 0
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

for g in kvserver clockrand compress lineserver blockserver fsprobe filestore countdown; do build_wasm "$g"; done
for g in kvserver compress lineserver; do build_native "$g"; done

# ---- SQLite, for sqlserver ----
sqlite_crate=libsqlite3-sys
sqlite_crate_version=0.40.0 # bundles SQLite 3.54.1
sqlite_crate_sha256=b06e69070b7e12262b0cd90832f0a7396f142a2b330181255562decf9f0c6215
sqlite_c_sha256=0c657666d819f261cc4007526ad57e1669de9949df7a8ea847aa284a2bf0ee52
sqlite_h_sha256=d6c84557261893439b341d2e6c35187ae3ea24fbfd843ad94616f72d89242b8c
sqlite="$out/sqlite"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$sqlite"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
sqlite_ok() { sha_ok "$sqlite/sqlite3.c" "$sqlite_c_sha256" && sha_ok "$sqlite/sqlite3.h" "$sqlite_h_sha256"; }

# Copies sqlite3.c/.h out of an unpacked crate ($1/sqlite3/) if they are the pinned ones.
sqlite_from_dir() {
    sha_ok "$1/sqlite3/sqlite3.c" "$sqlite_c_sha256" && sha_ok "$1/sqlite3/sqlite3.h" "$sqlite_h_sha256" || return 1
    for f in sqlite3.c sqlite3.h; do
        cp "$1/sqlite3/$f" "$sqlite/$f.tmp.$$" && mv "$sqlite/$f.tmp.$$" "$sqlite/$f" || return 1
    done
}

# Extracts them from a .crate file (a gzipped tar) if it is the pinned one.
sqlite_from_crate() {
    sha_ok "$1" "$sqlite_crate_sha256" || return 1
    tmp="$sqlite/x.$$"
    top="$sqlite_crate-$sqlite_crate_version"
    rm -rf "$tmp" && mkdir -p "$tmp" || return 1
    st=0
    tar -xzf "$1" -C "$tmp" "$top/sqlite3/sqlite3.c" "$top/sqlite3/sqlite3.h" && sqlite_from_dir "$tmp/$top" || st=1
    rm -rf "$tmp"
    return $st
}

# From cargo's cache, unpacked or not: no network.
sqlite_from_cargo_cache() {
    for d in "$cargo_home"/registry/src/*/"$sqlite_crate-$sqlite_crate_version"; do
        [ -d "$d" ] && sqlite_from_dir "$d" && return 0
    done
    for f in "$cargo_home"/registry/cache/*/"$sqlite_crate-$sqlite_crate_version.crate"; do
        [ -f "$f" ] && sqlite_from_crate "$f" && return 0
    done
    return 1
}

# Has cargo download the crate into its cache (checking the registry's
# checksum as well): a throwaway package that depends on exactly that version.
sqlite_fetch() {
    command -v cargo >/dev/null 2>&1 || { echo "guests/build.sh: cargo not found" >&2; return 1; }
    f="$sqlite/fetch"
    mkdir -p "$f/src" || return 1
    : >"$f/src/lib.rs"
    printf '%s\n' '[package]' 'name = "sqlite-amalgamation-fetch"' 'version = "0.0.0"' 'edition = "2021"' \
        'publish = false' '' '[dependencies]' \
        "$sqlite_crate = { version = \"=$sqlite_crate_version\", default-features = false }" '' '[workspace]' \
        >"$f/Cargo.toml"
    cargo fetch --quiet --manifest-path "$f/Cargo.toml" >&2
}

if ! sqlite_ok; then
    if ! sqlite_from_cargo_cache && ! { sqlite_fetch && sqlite_from_cargo_cache; }; then
        echo "guests/build.sh: cannot get SQLite for sqlserver: the crate $sqlite_crate $sqlite_crate_version" >&2
        echo "  (sha256 $sqlite_crate_sha256) is not in $cargo_home/registry and 'cargo fetch'" >&2
        echo "  could not download it (is crates.io reachable?), or its sqlite3.c/sqlite3.h differ" >&2
        echo "  from the pinned sha256 sums" >&2
        exit 4
    fi
fi

# sqlite3.c is compiled once per target (half a minute each, side by side)
# and the object kept; rebuilt when the source or the flags change. Its own
# warnings are not errors.
sqlite_defs="-DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_WAL -DSQLITE_MAX_MMAP_SIZE=0"
sqlite_defs="$sqlite_defs -DSQLITE_TEMP_STORE=3 -DSQLITE_DEFAULT_MEMSTATUS=0 -DSQLITE_DQS=0"
sqlite_defs="$sqlite_defs -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE"
# pread/pwrite (as on Linux, where they are the default) rather than lseek + read/write
sqlite_defs="$sqlite_defs -DHAVE_PREAD=1 -DHAVE_PWRITE=1"
wasm_cc="clang --target=wasm32-wasi --sysroot=$sysroot -O2"
native_cc="gcc -O2"
sqlite_obj() { # TARGET CC ARGS...: $sqlite/sqlite3-TARGET.o, if missing or stale
    o="$sqlite/sqlite3-$1.o"
    shift
    cmd="$* $sqlite_defs"
    if [ ! -f "$o" ] || [ "$sqlite/sqlite3.c" -nt "$o" ] || [ "$(cat "$o.cmd" 2>/dev/null)" != "$cmd" ]; then
        # shellcheck disable=SC2086 # the flags are meant to be split
        $cmd -c -o "$o.tmp.$$" "$sqlite/sqlite3.c" && mv "$o.tmp.$$" "$o" && echo "$cmd" >"$o.cmd"
    fi
}
# shellcheck disable=SC2086
sqlite_obj wasm $wasm_cc &
wasm_pid=$!
# shellcheck disable=SC2086
sqlite_obj native $native_cc &
native_pid=$!
st=0
wait $wasm_pid || st=1
wait $native_pid || st=1
[ $st -eq 0 ] || { echo "guests/build.sh: compiling $sqlite/sqlite3.c failed" >&2; exit 1; }

src="$here/sqlserver.c"
dst="$out/sqlserver.wasm"
if [ ! -f "$dst" ] || [ "$src" -nt "$dst" ] || [ "$0" -nt "$dst" ] || [ "$sqlite/sqlite3-wasm.o" -nt "$dst" ]; then
    # SQLite wants more stack than wasm-ld's default 64 KiB (the parser, the VDBE).
    # shellcheck disable=SC2086
    $wasm_cc -Wall -Wextra -Werror -I"$sqlite" -Wl,-z,stack-size=1048576 -o "$dst.tmp.$$" "$src" "$sqlite/sqlite3-wasm.o"
    mv "$dst.tmp.$$" "$dst"
fi
dst="$out/sqlserver-native"
if [ ! -f "$dst" ] || [ "$src" -nt "$dst" ] || [ "$0" -nt "$dst" ] || [ "$sqlite/sqlite3-native.o" -nt "$dst" ]; then
    # shellcheck disable=SC2086
    $native_cc -Wall -Wextra -Werror -I"$sqlite" -o "$dst.tmp.$$" "$src" "$sqlite/sqlite3-native.o" -lm
    mv "$dst.tmp.$$" "$dst"
fi
echo "guests built in $out"
