#!/usr/bin/env bash
# Logo and icon sets from sources other than simple-icons, to check that the trademark recipe generalises:
#   logo-logos       @iconify-json/logos 1.2.19 (npm, CC0): 2,064 multi-colour brand logos
#   flat-color-icons @iconify-json/flat-color-icons 1.2.3 (npm, MIT): 329 multi-colour drawings
# Both are built by ../shared/bench/build_logo_bench.py (its SET=logos mode reads any Iconify set from the
# logos package's folder), with the same easy/hard queries and backgrounds as logo-simple-icons.
#
#   SHARED_BENCH=../shared/bench BENCH_DIR=~/.cache/imagesearch-bench benchmarks/build_other_logo_sets.sh
#
# Needs ../shared/bench/fetch.sh to have run (its venv and the Debian wallpapers for the hard queries).
set -euo pipefail
SHARED_BENCH=${SHARED_BENCH:-$(cd "$(dirname "$0")/../../shared/bench" && pwd)}
BENCH_DIR=${BENCH_DIR:-$HOME/.cache/imagesearch-bench}
PYTHON="$BENCH_DIR/venv/bin/python"

unpack() {  # npm package spec, destination folder
    local tarball
    tarball=$(cd "$BENCH_DIR/npm" && npm pack --silent "$1")
    rm -rf "$2" && mkdir -p "$2" && tar xzf "$BENCH_DIR/npm/$tarball" -C "$2"
}

mkdir -p "$BENCH_DIR/npm/x"
unpack @iconify-json/logos@1.2.19 "$BENCH_DIR/npm/x/iconify-json-logos-1.2.19"
(cd "$SHARED_BENCH" && BENCH_DIR="$BENCH_DIR" SET=logos "$PYTHON" build_logo_bench.py)

# The builder reads its Iconify set from one fixed folder: give it a BENCH_DIR of its own whose folder of
# that name holds flat-color-icons, sharing the wallpapers.
icons="$BENCH_DIR/flat-color-icons"
mkdir -p "$icons/npm/x" "$icons/deb"
unpack @iconify-json/flat-color-icons@1.2.3 "$icons/npm/x/iconify-json-logos-1.2.19"
ln -sfn "$BENCH_DIR/deb/x" "$icons/deb/x"
(cd "$SHARED_BENCH" && BENCH_DIR="$icons" SET=logos "$PYTHON" build_logo_bench.py)
rm -rf "$BENCH_DIR/bench/flat-color-icons"
mv "$icons/bench/logo-logos" "$BENCH_DIR/bench/flat-color-icons"
echo "built $BENCH_DIR/bench/logo-logos and $BENCH_DIR/bench/flat-color-icons"
