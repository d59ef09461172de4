#!/bin/sh
# test_train_cli.sh: the happy path of the polytask binary on the census demo.
#
# Usage: sh test_train_cli.sh POLYTASK_BINARY REPO_ROOT
#
# 1. data/census/census.yaml as shipped, --seed 1: train --out --json reports
#    AUC > 0.8 for both tasks; eval --json gives the same task keys; predict
#    writes header + 6000 rows; inspect prints the parameter count.
# 2. A smaller copy of the config (hidden [32], 4 epochs, written into a temp
#    folder, data path absolute): two runs with the same seed give
#    byte-identical predictions; --checkpoint does not change the result;
#    --resume on a finished checkpoint trains no further epoch; a run killed
#    after its first checkpoint and resumed ends with the same predictions as
#    the uninterrupted run.
# Plain sh + grep/sed/awk: the JSON is parsed just enough for these checks.
set -u
BIN=$1
ROOT=$2
CFG=$ROOT/data/census/census.yaml
DATA=$ROOT/data/census/census-income-6k.csv.gz
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_train_cli.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
BGPID=
cleanup() {
    if [ -n "$BGPID" ]; then kill -9 "$BGPID" 2>/dev/null; fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

FAILS=0
fail() {
    echo "FAIL: $*"
    FAILS=$((FAILS + 1))
}
# show FILE: its first lines, for a failure report
show() {
    echo "  --- $1:"
    head -c 2000 "$1" | sed 's/^/    | /'
    echo
}

for f in "$CFG" "$DATA"; do
    [ -r "$f" ] || { echo "FAIL: cannot read $f"; exit 1; }
done

# tasks_of FILE: the members of the report's "tasks" object, on one line.
# Task objects hold numbers only, so the first "}}" closes "tasks".
tasks_of() {
    tr -d '\n' <"$1" | sed -n 's/.*"tasks": *{\(.*\)$/\1/p' | sed 's/}}.*/}/'
}
# task_names TASKS: the task keys, sorted, space-separated
task_names() {
    printf '%s\n' "$1" | grep -o '"[^"]*": *{' | sed 's/"\([^"]*\)".*/\1/' | sort | tr '\n' ' ' | sed 's/ $//'
}
# metric TASKS TASK NAME: the number, or nothing
metric() {
    printf '%s\n' "$1" | grep -o "\"$2\": *{[^}]*}" | head -n 1 |
        sed -n "s/.*\"$3\": *\([-+0-9.eE]*\).*/\1/p"
}
# above X LIMIT: X is a number greater than LIMIT
above() {
    [ -n "$1" ] && awk -v x="$1" -v l="$2" 'BEGIN { exit !(x + 0 > l + 0) }'
}

# ---- 1. the shipped config ----------------------------------------------------

if ! "$BIN" train --config "$CFG" --seed 1 --out "$T/model.ptm" --json >"$T/train.json" 2>"$T/train.err"; then
    fail "train --config $CFG --seed 1 --out --json exited non-zero"
    show "$T/train.err"
    echo "$FAILS failure(s)"
    exit 1
fi
[ -s "$T/model.ptm" ] || fail "train --out wrote no model file"
if [ "$(wc -l <"$T/train.json")" -ne 1 ] || [ "$(head -c 1 "$T/train.json")" != "{" ]; then
    fail "train --json: want one JSON line on stdout"
    show "$T/train.json"
fi
TASKS=$(tasks_of "$T/train.json")
if [ "$(task_names "$TASKS")" != "income never_married" ]; then
    fail "train --json: tasks are '$(task_names "$TASKS")', want 'income never_married'"
    show "$T/train.json"
fi
for t in income never_married; do
    auc=$(metric "$TASKS" "$t" auc)
    above "$auc" 0.8 || fail "train: task $t auc '$auc', want > 0.8"
done

if "$BIN" eval --model "$T/model.ptm" --data "$DATA" --json >"$T/eval.json" 2>"$T/eval.err"; then
    ETASKS=$(tasks_of "$T/eval.json")
    if [ "$(task_names "$ETASKS")" != "$(task_names "$TASKS")" ]; then
        fail "eval --json: tasks '$(task_names "$ETASKS")' differ from train's '$(task_names "$TASKS")'"
        show "$T/eval.json"
    fi
    grep -q '"rows": *6000' "$T/eval.json" || fail "eval --json: want \"rows\": 6000"
    for t in income never_married; do
        auc=$(metric "$ETASKS" "$t" auc)
        above "$auc" 0.8 || fail "eval: task $t auc '$auc', want > 0.8"
    done
else
    fail "eval --json exited non-zero"
    show "$T/eval.err"
fi

if "$BIN" predict --model "$T/model.ptm" --data "$DATA" --out "$T/pred.csv" >"$T/pred.out" 2>"$T/pred.err"; then
    lines=$(wc -l <"$T/pred.csv")
    [ "$lines" -eq 6001 ] || fail "predict: $lines lines, want 6001 (header + 6000 rows)"
    hdr=$(head -n 1 "$T/pred.csv")
    [ "$hdr" = "p_income,p_never_married" ] || fail "predict: header '$hdr', want 'p_income,p_never_married'"
    bad=$(sed 1d "$T/pred.csv" | awk -F, '
        function p(x) { return x ~ /^[-+0-9.eE]+$/ && x + 0 >= 0 && x + 0 <= 1 }
        NF != 2 || !p($1) || !p($2)' | head -n 3)
    [ -z "$bad" ] || fail "predict: rows that are not two probabilities: $bad"
else
    fail "predict exited non-zero"
    show "$T/pred.err"
fi

if "$BIN" inspect "$T/model.ptm" >"$T/inspect.out" 2>"$T/inspect.err"; then
    grep -q "parameters" "$T/inspect.out" || { fail "inspect: no 'parameters' line"; show "$T/inspect.out"; }
    grep -q "income" "$T/inspect.out" || fail "inspect: the metrics table lacks task income"
else
    fail "inspect exited non-zero"
    show "$T/inspect.err"
fi
if "$BIN" inspect "$T/model.ptm" --json >"$T/inspect.json" 2>"$T/inspect.err"; then
    grep -q '"params"' "$T/inspect.json" || fail "inspect --json: no \"params\""
else
    fail "inspect --json exited non-zero"
fi

# ---- 2. reproducibility and checkpoints on a smaller copy -----------------------

sed -e "s|^\( *train: \)census-income-6k.csv.gz|\1$DATA|" \
    -e 's/^\( *epochs: \).*/\14/' \
    -e 's/^\( *hidden: \).*/\1[32]/' "$CFG" >"$T/small.yaml"
grep -q "train: $DATA" "$T/small.yaml" && grep -q "epochs: 4" "$T/small.yaml" &&
    grep -q "hidden: \[32\]" "$T/small.yaml" || { fail "could not derive the small config"; show "$T/small.yaml"; }

# small NAME [TRAIN OPTIONS]: train the small config with seed 1 into
# $T/NAME.ptm, then predict into $T/NAME.csv
small() {
    name=$1
    shift
    if ! "$BIN" train --config "$T/small.yaml" --seed 1 --out "$T/$name.ptm" "$@" >"$T/$name.out" 2>"$T/$name.err"; then
        fail "small run $name: train $* exited non-zero"
        show "$T/$name.err"
        return 1
    fi
    if ! "$BIN" predict --model "$T/$name.ptm" --data "$DATA" --out "$T/$name.csv" >/dev/null 2>"$T/$name.perr"; then
        fail "small run $name: predict exited non-zero"
        show "$T/$name.perr"
        return 1
    fi
    return 0
}

# same seed, same predictions, byte for byte
if small a && small b; then
    cmp -s "$T/a.csv" "$T/b.csv" || fail "two runs with --seed 1 gave different predictions"
fi

# --checkpoint does not change the run; --resume on the finished checkpoint trains nothing
if small ck --checkpoint "$T/ck"; then
    [ -s "$T/ck" ] || fail "--checkpoint wrote no file"
    cmp -s "$T/a.csv" "$T/ck.csv" || fail "a run with --checkpoint gave different predictions"
    if small resumed --checkpoint "$T/ck" --resume; then
        grep -q "resumed from" "$T/resumed.err" || { fail "--resume: no 'resumed from' line"; show "$T/resumed.err"; }
        grep -q "^epoch " "$T/resumed.err" && { fail "--resume on a finished checkpoint trained more epochs"; show "$T/resumed.err"; }
        cmp -s "$T/a.csv" "$T/resumed.csv" || fail "--resume from the final checkpoint gave different predictions"
    fi
fi

# an interrupted run: killed once its first checkpoint exists, then resumed
"$BIN" train --config "$T/small.yaml" --seed 1 --checkpoint "$T/ck2" --out "$T/killed.ptm" >/dev/null 2>"$T/killed.err" &
BGPID=$!
i=0
while [ ! -e "$T/ck2" ] && [ "$i" -lt 1500 ] && kill -0 "$BGPID" 2>/dev/null; do
    sleep 0.02 2>/dev/null || sleep 1
    i=$((i + 1))
done
kill -9 "$BGPID" 2>/dev/null
wait "$BGPID" 2>/dev/null
BGPID=
if [ ! -e "$T/ck2" ]; then
    fail "the background run wrote no checkpoint"
    show "$T/killed.err"
elif small resumed2 --checkpoint "$T/ck2" --resume; then
    from=$(sed -n 's/.*resumed from .* after epoch \([0-9]*\).*/\1/p' "$T/resumed2.err")
    [ -n "$from" ] || { fail "resume after a kill: no 'resumed from' line"; show "$T/resumed2.err"; }
    cmp -s "$T/a.csv" "$T/resumed2.csv" || fail "resumed after epoch $from: predictions differ from the uninterrupted run"
    echo "note: the interrupted run was resumed after epoch ${from:-?} of 4"
fi

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "all train CLI checks passed"
exit 0
