#!/bin/sh
# Census-income benchmark: polytask against the PyTorch peer
# (shared/bench/peers/torch_mtl.py), same model dimensions and settings, one
# after the other in one run, 1 thread each. Prints per-task test AUC, whole-
# process wall time and peak RSS of each, and the ratios.
#
#   sh bench/census/run.sh [CONFIG...]     (default: all configs here; from anywhere)
#   THREADS=2 sh bench/census/run.sh mmoe  (both engines at 2 threads)
#
# CONFIG names a YAML file beside this script; the peer gets the same model
# kind and batch size, read from it.
#
# The peer drops OPENBLAS_CORETYPE for its own process (see its docstring), so
# it runs OpenBLAS's native kernels; polytask runs oneDNN's. Raw outputs go to
# bench/census/out/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
bin=${POLYTASK:-$root/build/polytask}
data=$shared/bench/data/census
out=$here/out
mkdir -p "$out"
[ -x "$bin" ] || { echo "run.sh: $bin not built (make build)" >&2; exit 1; }
[ -x /usr/bin/python3 ] || { echo "run.sh: needs Debian's python3 with python3-torch (scripts/deps.sh bench)" >&2; exit 1; }
models=${*:-single shared_bottom mmoe mmoe_b256 ple esmm}
threads=${THREADS:-1}
nums=$(sed -n 's/^numeric=//p' "$data/columns.txt")
cats=$(sed -n 's/^categorical=//p' "$data/columns.txt")

. "$root/bench/lib.sh"

echo "census-income, $(date -u +%Y-%m-%d), $(nproc) cores, $threads thread(s) per engine"
printf '%-14s %-16s %9s %9s %8s %9s %9s %9s %8s %9s %9s\n' model task pt_auc peer_auc d_auc \
    pt_wall_s peer_wall_s speedup pt_mib peer_mib rss_ratio
for m in $models; do
    cfg=$here/$m.yaml
    [ -f "$cfg" ] || { echo "run.sh: no config $cfg" >&2; exit 1; }
    kind=$(sed -n 's/^  kind: *//p' "$cfg"); [ "$kind" = mlp ] && kind=single
    batch=$(sed -n 's/^  batch: *//p' "$cfg")
    timed "polytask-$m-t$threads" "$bin" train --config "$cfg" --threads "$threads" --json
    timed "peer-$m-t$threads" /usr/bin/python3 "$shared/bench/peers/torch_mtl.py" --train "$data/train.csv.gz" \
        --test "$data/test.csv.gz" --labels income,never_married --num "$nums" --cat "$cats" --model "$kind" \
        --epochs 5 --batch "$batch" --lr 0.001 --emb 16 --threads "$threads" --seed 1
    read -r pw pr < "$out/polytask-$m-t$threads.time"
    read -r qw qr < "$out/peer-$m-t$threads.time"
    for t in income never_married; do
        # ESMM's second column is pCTCVR ("ctcvr" here, "income&never_married" for the peer)
        pt=$t; qt=$t
        [ "$kind" = esmm ] && [ $t = never_married ] && pt=ctcvr && qt="income&never_married"
        pa=$(field "$out/polytask-$m-t$threads.json" tasks "$pt" auc)
        qa=$(field "$out/peer-$m-t$threads.json" tasks "$qt" auc)
        awk -v m="$m" -v t="$pt" -v pa="$pa" -v qa="$qa" -v pw="$pw" -v qw="$qw" -v pr="$pr" -v qr="$qr" 'BEGIN {
            printf "%-14s %-16s %9.5f %9.5f %+8.5f %9.2f %9.2f %8.2fx %8.1f %9.1f %9.3f\n",
                   m, t, pa, qa, pa - qa, pw, qw, qw / pw, pr / 1024, qr / 1024, pr / qr }'
    done
done
echo "targets: |d_auc| <= 0.003 (or better), speedup >= 1.5x, rss_ratio <= 0.5"
