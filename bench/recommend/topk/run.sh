#!/bin/sh
# Exact top-100 retrieval over a 1,000,000 x 64 catalogue: users/s of
# topk_dot on 1 and 2 threads, GEMM share, against nn_sgemm's square peak
# (see topk_bench.c and README.md).
#
#   sh bench/recommend/topk/run.sh [topk_bench options]   (from anywhere; needs
#                                                         gcc, libdnnl, libgomp)
#
# Builds topk_bench.c against src/rec/topk.c, src/nn/gemm.c and src/util/*.c
# (no CMake needed, as bench/gemm_peak does) with the Release flags (-O3) and
# oneDNN into a temporary folder (removed on exit), then runs it. Threads are
# set by the program (1, then 2), not by OMP_NUM_THREADS.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/topk_bench.XXXXXX")
trap 'rm -rf "$out"' EXIT INT TERM
cc=${CC:-gcc}
srcs="$here/topk_bench.c $root/src/rec/topk.c $root/src/nn/gemm.c $(ls "$root"/src/util/*.c)"
flags="-std=c11 -O3 -DNDEBUG -fopenmp -DPT_HAVE_OPENMP -DPT_HAVE_DNNL -I$root/include -I$root/src"
# shellcheck disable=SC2086
$cc $flags -DPT_VERSION_STRING=\"0\" -o "$out/topk_bench" $srcs -ldnnl -lm

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc);" \
     "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$out/topk_bench" "$@"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
