#!/usr/bin/env bash
# Installs the Debian packages cogvideox needs to build and test. Idempotent; run as root.
# Every package is named in README.md ("Dependencies") with the reason it was chosen.
set -euo pipefail

packages=(
  build-essential      # gcc, make: the C11 compiler
  cmake                # build system + CTest
  pkg-config           # locating the -dev libraries below
  libjansson-dev       # JSON: safetensors headers, diffusers configs, golden case files
  libavformat-dev      # MP4 muxing (FFmpeg), with faststart for browsers; demuxing the --image/--video inputs
  libavcodec-dev       # H.264 through libx264 (Debian's libavcodec is built with it), PNG frames; decoding the inputs
  libswscale-dev       # RGB -> yuv420p conversion for H.264; input frames -> RGB
  libavutil-dev        # FFmpeg's common utilities (frames, options, errors)
  ffmpeg               # ffprobe: the tests check the MP4s we write
  clang                # libFuzzer targets (fuzz/) and the sanitizer build
  libclang-rt-14-dev   # clang's ASan/UBSan/libFuzzer runtimes
  libmicrohttpd-dev    # the service's HTTP server (thread pool, upgrade for WebSocket)
  libwslay-dev         # WebSocket framing for live progress (/v1/socket) over libmicrohttpd's upgrade
  libssl-dev           # libcrypto: HMAC-SHA256 signatures, CSPRNG tokens, AES-GCM for API secrets at rest; sha256 of downloads
  libsqlite3-dev       # the service's durable store (tasks, projects, nonces), WAL mode: the single-machine default
  libpq-dev            # the PostgreSQL store (--store postgresql://...), shared by several API nodes and workers
  postgresql           # the server the tests start themselves (initdb + pg_ctl, Unix socket) for the PostgreSQL suite
  libcurl4-openssl-dev # task callbacks (POST to callbackUrl with timeouts) and the tests' HTTP client; cogvideox download (hub)
  chromium             # headless browser for the web page's test (tests/cli_web.sh, driven by playwright-core from npm)
  libopenmpi-dev       # MPI: one video over several processes/machines (mpirun -np N cogvideox generate)
  openmpi-bin          # mpirun, for those runs and their tests (tests/cli_mpi.sh)
)

# Node.js + npm run the browser test's playwright-core. Machines that ship their own Node (not from Debian's
# packages) are left alone; elsewhere Debian's nodejs and npm are installed.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# An apt list older than a day (or none) may not know the packages: refresh it first.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
  apt-get update -q
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
