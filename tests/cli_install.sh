#!/usr/bin/env bash
# The library as an embedder gets it (issue 14, item 16): `cmake --install` of this build into a temporary prefix,
# then a small program built against the installed header, library and cogvideox.pc only (no source tree on any
# path), shared and static: it reads cvx_engine_info, opens a tiny model folder (made by the installed binary) and
# runs cvx_generate to an MP4. Also: libcogvideox exports exactly the CVX_API functions of the installed header
# (-fvisibility=hidden), and neither the library nor the program needs the download's or the service's libraries
# (libcurl, libcrypto, libmicrohttpd, sqlite, wslay).
set -u
BIN=${1:?usage: cli_install.sh path/to/cogvideox}
BUILD=$(cd "$(dirname "$BIN")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-install-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

P=$TMP/prefix
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1 || { bad "cmake --install: $(tail -n 5 "$TMP/install.log")"; exit 1; }
LIBDIR=$(dirname "$(find "$P" -name cogvideox.pc | head -n 1)")/..
LIBDIR=$(cd "$LIBDIR" && pwd)
for f in "$P/bin/cogvideox" "$P/include/cogvideox.h" "$LIBDIR/libcogvideox.a" "$LIBDIR/pkgconfig/cogvideox.pc"; do
    [ -e "$f" ] || bad "not installed: $f"
done
ls "$LIBDIR"/libcogvideox.so* >/dev/null 2>&1 || bad "no libcogvideox.so installed"
[ "$(ls "$P/include")" = "cogvideox.h" ] && ok "installed: the binary, libcogvideox.{so,a}, cogvideox.h alone, cogvideox.pc" ||
    bad "include/ holds more than cogvideox.h: $(ls "$P/include")"

# the compiler and sanitizer flags of this build (an ASan library needs an ASan program)
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=${CC:-cc}
SAN=
grep -q '^CVX_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SAN="-fsanitize=address,undefined"
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
CFLAGS=$(pkg-config --cflags cogvideox) || { bad "pkg-config --cflags cogvideox"; exit 1; }
LIBS=$(pkg-config --libs cogvideox) || { bad "pkg-config --libs cogvideox"; exit 1; }
# the static library with its Requires.private and Libs.private, those linked as shared libraries (Debian ships no
# static FFmpeg dependencies)
STATIC_LIBS="$(pkg-config --libs $(pkg-config --print-requires-private cogvideox)) $(sed -n 's/^Libs.private: //p' "$LIBDIR/pkgconfig/cogvideox.pc")"
case "$CFLAGS $LIBS" in *"$(cd "$BUILD/.." && pwd)"*) bad "pkg-config points into the source tree: $CFLAGS $LIBS";; esac
ok "pkg-config: $CFLAGS $LIBS"

"$P/bin/cogvideox" make-model --preset tiny -o "$TMP/tiny" >/dev/null 2>&1 || bad "the installed binary: make-model"
cat >"$TMP/embed.c" <<'EOF'
/* An embedder's program: only <cogvideox.h> and -lcogvideox. */
#include <cogvideox.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    cvx_model_info limits;
    if (cvx_engine_info(NULL, &limits) != CVX_OK || limits.max_steps < 1) return 3;
    cvx_engine *e = NULL;
    char err[512] = "";
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 1;
    if (cvx_engine_open(&e, argv[1], &ep, err, sizeof err) != CVX_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 4;
    }
    cvx_model_info info;
    cvx_engine_info(e, &info);
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a red fox in the snow";
    p.steps = 1;
    p.num_frames = 5;
    p.height = p.width = 16;
    p.output_path = argv[2];
    cvx_video v;
    cvx_status st = cvx_generate(e, &p, &v);
    if (st != CVX_OK) {
        fprintf(stderr, "generate: %s\n", cvx_engine_last_error(e));
        cvx_engine_close(e);
        return 5;
    }
    printf("cogvideox %s: %s (%s weights), %d frames of %dx%d, limits: steps %d-%d\n", cvx_version(),
           info.model_name, cvx_weights_kind_name(info.weights), v.num_frames, v.width, v.height, limits.min_steps,
           limits.max_steps);
    cvx_video_free(&v);
    cvx_engine_close(e);
    return 0;
}
EOF
cd "$TMP" || exit 1
# shared: the installed .so, found through LD_LIBRARY_PATH
if $CC -std=c11 -Wall -Wextra -Werror $SAN $CFLAGS embed.c -o embed $LIBS 2>"$TMP/cc.log"; then
    out=$(LD_LIBRARY_PATH=$LIBDIR ./embed "$TMP/tiny" "$TMP/shared.mp4" 2>&1)
    rc=$?
    [ $rc -eq 0 ] && [ -s "$TMP/shared.mp4" ] && ok "shared: $out" || bad "shared program: exit $rc: $out"
    needed=$(readelf -d embed | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
    grep -q "libcogvideox.so" <<<"$needed" && ok "the program needs: $needed" || bad "the program does not use libcogvideox.so: $needed"
else
    bad "building against the installed library: $(head -c 1500 "$TMP/cc.log")"
fi
# static: libcogvideox.a and its Requires.private / Libs.private
if $CC -std=c11 -Wall -Wextra -Werror $SAN $CFLAGS embed.c -o embed-static "$LIBDIR/libcogvideox.a" $STATIC_LIBS 2>"$TMP/cc2.log"; then
    out=$(./embed-static "$TMP/tiny" "$TMP/static.mp4" 2>&1)
    rc=$?
    [ $rc -eq 0 ] && [ -s "$TMP/static.mp4" ] && ok "static: $out" || bad "static program: exit $rc: $out"
    cmp -s "$TMP/shared.mp4" "$TMP/static.mp4" && ok "shared and static programs wrote the same MP4" ||
        bad "the shared and the static program wrote different MP4s"
else
    bad "building against libcogvideox.a: $(head -c 1500 "$TMP/cc2.log")"
fi

# what the shared library exports: the header's CVX_API functions, nothing else
SO=$(ls "$LIBDIR"/libcogvideox.so.*.*.* 2>/dev/null | head -n 1)
exported=$(nm -D --defined-only "$SO" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^_' | sort)
declared=$(sed -n 's/^CVX_API [^(]*[ *]\(cvx_[a-z0-9_]*\)(.*/\1/p' "$P/include/cogvideox.h" | sort)
if [ -n "$declared" ] && [ "$exported" = "$declared" ]; then
    ok "libcogvideox exports exactly the $(wc -l <<<"$declared") CVX_API functions of cogvideox.h"
else
    bad "exports differ from the header: $(diff <(echo "$declared") <(echo "$exported") | head -n 20 | tr '\n' ' ')"
fi
libneeded=$(readelf -d "$SO" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
if grep -Eq "curl|crypto|ssl|microhttpd|sqlite|wslay" <<<"$libneeded"; then
    bad "libcogvideox needs the download's or the service's libraries: $libneeded"
else
    ok "libcogvideox needs only: $libneeded"
fi

if [ $fails -ne 0 ]; then echo "cli_install: $fails failed"; exit 1; fi
echo "cli_install: all passed"
