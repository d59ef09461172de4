#!/bin/sh
# Single-thread GFLOP/s of nn_sgemm on the census and large-vocab MMoE GEMM
# shapes, for the oneDNN backend in float32 and at train.precision bf16
# (dnnl-bf16 rows) and the OpenBLAS backend (see gemm_peak.c).
#
#   sh bench/gemm_peak/run.sh            (from anywhere; needs gcc, libdnnl,
#                                         libopenblas, libgomp)
#
# Builds gemm_peak.c twice against src/nn/gemm.c + src/util/*.c (no CMake
# needed) into a temporary folder (removed on exit), then runs each with 1
# thread. The
# environment is otherwise left as found: OPENBLAS_CORETYPE in particular is
# not touched, and the program prints its value.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/gemm_peak.XXXXXX")
trap 'rm -rf "$out"' EXIT INT TERM
cc=${CC:-gcc}
srcs="$here/gemm_peak.c $root/src/nn/gemm.c $(ls "$root"/src/util/*.c)"
flags="-std=c11 -O2 -fopenmp -DPT_HAVE_OPENMP -I$root/include -I$root/src -DPT_VERSION_STRING=\"0\""
# shellcheck disable=SC2086
$cc $flags -DPT_HAVE_DNNL -o "$out/gemm_peak_dnnl" $srcs -ldnnl -lm
# shellcheck disable=SC2086
$cc $flags -DPT_HAVE_CBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread \
    -o "$out/gemm_peak_openblas" $srcs -lopenblas -lm

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc);" \
     "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Single thread: oneDNN and OpenBLAS (pthread build) both honour these.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$out/gemm_peak_dnnl" dnnl
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$out/gemm_peak_dnnl" dnnl-bf16 bf16 | grep -v '^backend'
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$out/gemm_peak_openblas" openblas | grep -v '^backend'
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
