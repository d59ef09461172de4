#!/bin/sh
# Transfer learning and distillation on the census benchmark tables.
#  1. cold: MMoE on income + never_married, valid AUC per epoch;
#  2. pretrain: MMoE on never_married alone;
#  3. warm: the two-task MMoE with --init-from the pretrained model (the new
#     income task gets a fresh tower and gate; embeddings and experts are reused);
#  4. new data: the train rows cut in two halves (as two months of data); the
#     MMoE on half b cold, and warm-started from the MMoE of half a;
#  5. distillation: a small shared-bottom student with and without
#     --teacher (the MMoE of bench/census/mmoe.yaml), AUC and size.
#   sh bench/census/transfer/run.sh     (after make build; about 2 minutes)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=${POLYTASK:-$root/build/polytask}
out=$here/out
mkdir -p "$out"
run() { name=$1; shift; "$bin" train --threads 1 "$@" 2> "$out/$name.log" > "$out/$name.txt"; }
run cold --config "$here/mmoe_two_tasks.yaml"
run pretrain --config "$here/pretrain_never_married.yaml" --out "$out/pretrain.ptm"
run warm --config "$here/mmoe_two_tasks.yaml" --init-from "$out/pretrain.ptm"
run warm_frozen --config "$here/mmoe_two_tasks.yaml" --init-from "$out/pretrain.ptm" --freeze embeddings,experts
echo "valid income AUC per epoch (new task; MMoE, census valid set):"
printf '%-12s %s\n' run "epoch 1..5"
for r in cold warm warm_frozen; do
    printf '%-12s' "$r"
    sed -n 's/.*valid income auc \([0-9.]*\).*/\1/p' "$out/$r.log" | tr '\n' ' '
    echo
done
cold=$(sed -n 's/.*valid income auc \([0-9.]*\).*/\1/p' "$out/cold.log" | tail -n 1)
for r in warm warm_frozen; do
    e=$(sed -n 's/.*valid income auc \([0-9.]*\).*/\1/p' "$out/$r.log" | awk -v c="$cold" '$1 >= c { print NR; exit }')
    echo "$r reaches the cold run's final valid income AUC ($cold) at epoch ${e:-never (in 5)}"
done
echo
shared=$(cd "$root/../shared" && pwd)
zcat "$shared/bench/data/census/train.csv.gz" | head -n 39905 | gzip -1 > "$out/half_a.csv.gz"
zcat "$shared/bench/data/census/train.csv.gz" | { head -n 1; tail -n +39906; } | gzip -1 > "$out/half_b.csv.gz"
run month_a --config "$here/month_a.yaml" --out "$out/month_a.ptm"
run cold_b --config "$here/month_b.yaml"
run warm_b --config "$here/month_b.yaml" --init-from "$out/month_a.ptm"
echo "new data: MMoE on the second half of the train rows, valid AUC per epoch (income / never_married):"
for r in cold_b warm_b; do
    printf '%-12s' "$r"
    sed -n 's/.*valid income auc \([0-9.]*\)  valid never_married auc \([0-9.]*\).*/\1\/\2/p' "$out/$r.log" | tr '\n' ' '
    echo
done
cold=$(sed -n 's/.*valid income auc \([0-9.]*\).*/\1/p' "$out/cold_b.log" | tail -n 1)
e=$(sed -n 's/.*valid income auc \([0-9.]*\).*/\1/p' "$out/warm_b.log" | awk -v c="$cold" '$1 >= c { print NR; exit }')
echo "warm_b reaches the cold run's final valid income AUC ($cold) at epoch ${e:-never (in 5)}"
echo
run teacher --config "$root/bench/census/mmoe.yaml" --out "$out/teacher.ptm" --json
run student --config "$here/student.yaml" --out "$out/student.ptm" --json
run student_distilled --config "$here/student.yaml" --out "$out/student_distilled.ptm" --teacher "$out/teacher.ptm" --json
echo "distillation (test AUC; params; model file size):"
for r in teacher student student_distilled; do
    /usr/bin/python3 -c 'import json,sys,os; d=json.load(open(sys.argv[1]))
print("%-18s income %.5f  never_married %.5f  params %8d  file %7.0f KiB" % (sys.argv[2], d["tasks"]["income"]["auc"],
      d["tasks"]["never_married"]["auc"], d["params"], os.path.getsize(sys.argv[3]) / 1024))' "$out/$r.txt" "$r" "$out/$r.ptm"
done
