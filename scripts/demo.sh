#!/bin/sh
# make demo: trains the two-task census demo (data/census, 6,000 raw UCI rows),
# evaluates the model on the whole file with GAUC by education, writes
# predictions, and shows what the model file holds.
set -eu
bin=${1:-build/polytask}
out=build/demo
mkdir -p "$out"
echo "== polytask train --config data/census/census.yaml --out $out/census.ptm"
"$bin" train --config data/census/census.yaml --out "$out/census.ptm"
echo
echo "== polytask eval on the whole file (training rows included, so optimistic), GAUC by education"
"$bin" eval --model "$out/census.ptm" --data data/census/census-income-6k.csv.gz --group-by education \
    --roc-out "$out/roc.csv"
echo
echo "== polytask predict --model $out/census.ptm --data data/census/census-income-6k.csv.gz --out $out/predictions.csv"
"$bin" predict --model "$out/census.ptm" --data data/census/census-income-6k.csv.gz --out "$out/predictions.csv"
head -4 "$out/predictions.csv"
echo
echo "== polytask inspect $out/census.ptm (first lines)"
"$bin" inspect "$out/census.ptm" | head -8
