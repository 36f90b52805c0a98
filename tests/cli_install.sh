#!/usr/bin/env bash
# The libraries as an embedder gets them (issue 14, item 16): `cmake --install` of this build into a temporary prefix,
# then small programs built against the installed headers, libraries and .pc files only (no source tree on any path):
#  - frames only: <cogvideox.h> and `pkg-config cogvideox` (libcogvideox: no FFmpeg): cvx_engine_info, a tiny model
#    folder (made by the installed binary) opened, cvx_generate to frames in memory; an output file asked for without
#    the writers is refused, naming libcogvideox-media;
#  - with files: <cogvideox_media.h> and `pkg-config cogvideox-media`, cvx_media_enable(), cvx_generate to an MP4 —
#    shared, and static (the .a files) with the same bytes.
# Also: each library exports exactly the CVX_API functions of its header (-fvisibility=hidden), libcogvideox needs
# neither FFmpeg nor the download's or the service's libraries (libcurl, libcrypto, libmicrohttpd, sqlite, wslay),
# and libcogvideox-media needs FFmpeg and libcogvideox only.
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
for f in "$P/bin/cogvideox" "$P/include/cogvideox.h" "$P/include/cogvideox_media.h" "$LIBDIR/libcogvideox.a" \
         "$LIBDIR/libcogvideox-media.a" "$LIBDIR/pkgconfig/cogvideox.pc" "$LIBDIR/pkgconfig/cogvideox-media.pc"; do
    [ -e "$f" ] || bad "not installed: $f"
done
SO=$(ls "$LIBDIR"/libcogvideox.so.*.*.* 2>/dev/null | head -n 1)
MSO=$(ls "$LIBDIR"/libcogvideox-media.so.*.*.* 2>/dev/null | head -n 1)
[ -n "$SO" ] && [ -n "$MSO" ] || bad "libcogvideox.so / libcogvideox-media.so not installed"
[ "$(ls "$P/include" | tr '\n' ' ')" = "cogvideox.h cogvideox_media.h " ] &&
    ok "installed: the binary, libcogvideox and libcogvideox-media (.so, .a), their two headers and .pc files" ||
    bad "include/ holds: $(ls "$P/include")"

# the compiler and sanitizer flags of this build (an ASan library needs an ASan program)
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=${CC:-cc}
SAN=
grep -q '^CVX_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" && SAN="-fsanitize=address,undefined"
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
for pc in cogvideox cogvideox-media; do
    flags=$(pkg-config --cflags --libs $pc) || { bad "pkg-config $pc"; continue; }
    case "$flags" in *"$(cd "$BUILD/.." && pwd)"*) bad "pkg-config $pc points into the source tree: $flags";; esac
    ok "pkg-config $pc: $flags"
done
# static: the .a files, and the Requires.private / Libs.private linked as shared libraries (Debian ships no static
# FFmpeg dependencies)
static_deps() { # PC...
    local pc reqs=
    for pc in "$@"; do reqs="$reqs $(pkg-config --print-requires-private "$pc")"; done
    echo "$(pkg-config --libs $reqs) $(sed -n 's/^Libs.private: //p' "$LIBDIR/pkgconfig/cogvideox.pc")"
}

"$P/bin/cogvideox" make-model --preset tiny -o "$TMP/tiny" >/dev/null 2>&1 || bad "the installed binary: make-model"
cat >"$TMP/frames.c" <<'EOF'
/* Frames only: <cogvideox.h> and -lcogvideox, no FFmpeg. */
#include <cogvideox.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
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
    cvx_video v;
    if (cvx_generate(e, &p, &v) != CVX_OK || !v.frames) {
        fprintf(stderr, "generate: %s\n", cvx_engine_last_error(e));
        return 5;
    }
    printf("cogvideox %s: %s (%s weights), %d frames of %dx%d in memory, limits: steps %d-%d; ", cvx_version(),
           info.model_name, cvx_weights_kind_name(info.weights), v.num_frames, v.width, v.height, limits.min_steps,
           limits.max_steps);
    cvx_video_free(&v);
    p.output_path = "never.mp4"; /* without libcogvideox-media: refused */
    cvx_status st = cvx_generate(e, &p, &v);
    printf("an MP4 without the writers: %s: %s\n", cvx_status_name(st), cvx_engine_last_error(e));
    int named = strstr(cvx_engine_last_error(e), "libcogvideox-media") != NULL;
    cvx_engine_close(e);
    return st == CVX_ERR_UNSUPPORTED && named ? 0 : 6;
}
EOF
cat >"$TMP/files.c" <<'EOF'
/* With files: <cogvideox_media.h> and -lcogvideox-media. */
#include <cogvideox_media.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3 || cvx_media_enable() != CVX_OK) return 2;
    cvx_engine *e = NULL;
    char err[512] = "";
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 1;
    if (cvx_engine_open(&e, argv[1], &ep, err, sizeof err) != CVX_OK) {
        fprintf(stderr, "open: %s\n", err);
        return 4;
    }
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a red fox in the snow";
    p.steps = 1;
    p.num_frames = 5;
    p.height = p.width = 16;
    p.output_path = argv[2];
    cvx_status st = cvx_generate(e, &p, NULL);
    if (st != CVX_OK) fprintf(stderr, "generate: %s\n", cvx_engine_last_error(e));
    else printf("wrote %s\n", argv[2]);
    cvx_engine_close(e);
    return st == CVX_OK ? 0 : 5;
}
EOF
cd "$TMP" || exit 1
needed_of() { readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' '; }
# frames only, shared
if $CC -std=c11 -Wall -Wextra -Werror $SAN $(pkg-config --cflags cogvideox) frames.c -o frames \
       $(pkg-config --libs cogvideox) 2>"$TMP/cc.log"; then
    out=$(LD_LIBRARY_PATH=$LIBDIR ./frames "$TMP/tiny" 2>&1)
    rc=$?
    [ $rc -eq 0 ] && grep -q "CVX_ERR_UNSUPPORTED: writing never.mp4 needs libcogvideox-media" <<<"$out" &&
        [ ! -e never.mp4 ] && ok "frames only, libcogvideox alone: $out" || bad "frames program: exit $rc: $out"
    needed=$(needed_of frames)
    grep -q "libcogvideox.so" <<<"$needed" && ! grep -q "libav" <<<"$needed" && ok "the frames program needs: $needed" ||
        bad "the frames program needs: $needed"
else
    bad "building against libcogvideox: $(head -c 1500 "$TMP/cc.log")"
fi
# with files, shared
if $CC -std=c11 -Wall -Wextra -Werror $SAN $(pkg-config --cflags cogvideox-media) files.c -o files \
       $(pkg-config --libs cogvideox-media) 2>"$TMP/cc.log"; then
    out=$(LD_LIBRARY_PATH=$LIBDIR ./files "$TMP/tiny" "$TMP/shared.mp4" 2>&1)
    rc=$?
    [ $rc -eq 0 ] && [ -s "$TMP/shared.mp4" ] && ok "with files, shared: $out ($(needed_of files))" ||
        bad "files program: exit $rc: $out"
else
    bad "building against libcogvideox-media: $(head -c 1500 "$TMP/cc.log")"
fi
# static
if $CC -std=c11 -Wall -Wextra -Werror $SAN $(pkg-config --cflags cogvideox) frames.c -o frames-static \
       "$LIBDIR/libcogvideox.a" $(static_deps cogvideox) 2>"$TMP/cc.log"; then
    out=$(./frames-static "$TMP/tiny" 2>&1)
    [ $? -eq 0 ] && ok "frames only, static: $out" || bad "static frames program: $out"
else
    bad "building against libcogvideox.a: $(head -c 1500 "$TMP/cc.log")"
fi
if $CC -std=c11 -Wall -Wextra -Werror $SAN $(pkg-config --cflags cogvideox-media) files.c -o files-static \
       "$LIBDIR/libcogvideox-media.a" "$LIBDIR/libcogvideox.a" $(static_deps cogvideox-media cogvideox) 2>"$TMP/cc.log"; then
    out=$(./files-static "$TMP/tiny" "$TMP/static.mp4" 2>&1)
    [ $? -eq 0 ] && [ -s "$TMP/static.mp4" ] && ok "with files, static: $out" || bad "static files program: $out"
    cmp -s "$TMP/shared.mp4" "$TMP/static.mp4" && ok "shared and static programs wrote the same MP4" ||
        bad "the shared and the static program wrote different MP4s"
else
    bad "building against libcogvideox-media.a: $(head -c 1500 "$TMP/cc.log")"
fi

# what each shared library exports: its header's CVX_API functions, nothing else
exports_match() { # SO HEADER
    local exported declared
    exported=$(nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^_' | sort)
    declared=$(sed -n 's/^CVX_API [^(]*[ *]\(cvx_[a-z0-9_]*\)(.*/\1/p' "$2" | sort)
    if [ -n "$declared" ] && [ "$exported" = "$declared" ]; then
        ok "$(basename "$1") exports exactly the $(wc -l <<<"$declared") CVX_API functions of $(basename "$2")"
    else
        bad "$(basename "$1"): exports differ from $(basename "$2"): $(diff <(echo "$declared") <(echo "$exported") | head -n 20 | tr '\n' ' ')"
    fi
}
exports_match "$SO" "$P/include/cogvideox.h"
exports_match "$MSO" "$P/include/cogvideox_media.h"
libneeded=$(needed_of "$SO")
if grep -Eq "libav|swscale|curl|crypto|ssl|microhttpd|sqlite|wslay" <<<"$libneeded"; then
    bad "libcogvideox needs FFmpeg, the download's or the service's libraries: $libneeded"
else
    ok "libcogvideox needs only: $libneeded"
fi
mneeded=$(needed_of "$MSO")
if grep -Eq "curl|crypto|ssl|microhttpd|sqlite|wslay" <<<"$mneeded" || ! grep -q "libcogvideox.so" <<<"$mneeded"; then
    bad "libcogvideox-media needs: $mneeded"
else
    ok "libcogvideox-media needs: $mneeded"
fi

if [ $fails -ne 0 ]; then echo "cli_install: $fails failed"; exit 1; fi
echo "cli_install: all passed"
