#!/bin/sh
# test_bad_input.sh: the polytask binary on bad input.
#
# Usage: sh test_bad_input.sh POLYTASK_BINARY REPO_ROOT
#
# Every runtime failure must exit 1 with exactly one line on stderr,
# "polytask: FILE[:LINE]: what is wrong", naming the file (and the line where
# there is one), and print nothing on stdout. Warnings about skipped rows
# ("polytask: warning: ...") may come before that line. Usage errors exit 2;
# --help exits 0 with the usage on stdout. Data and configs are written here
# into a temp folder; the models are tiny (hidden [8], 2 epochs).
set -u
BIN=$1
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_bad_input.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM

. "$2/tests/cli/lib.sh"

# ---- data and config -------------------------------------------------------

# 40 rows: 2 categorical, 2 numeric, a 0/1 label and a yes/no label
gen_rows() {
    i=1
    while [ "$i" -le 40 ]; do
        if [ $((i % 3)) -eq 0 ]; then buy=yes; else buy=no; fi
        echo "$i,city$((i % 3)),dev$((i % 2)),$((20 + i)),$((i * 7 % 50)).5,$(((i / 2) % 2)),$buy"
        i=$((i + 1))
    done
}
{
    echo "id,city,device,age,spend,click,buy"
    gen_rows
} >"$T/train.csv"

# write_cfg NAME TRAIN_FILE [EXTRA_DATA_LINE]: a config in $T/NAME.yaml
write_cfg() {
    {
        echo "data:"
        echo "  train: $2"
        echo "  split: {valid: 0.25, seed: 3}"
        echo "  keys: [id]"
        if [ $# -ge 3 ]; then echo "$3"; fi
        echo "features:"
        echo "  categorical: [city, device]"
        echo "  numeric: [age, spend]"
        echo "tasks:"
        echo "  - {name: click, label: click}"
        echo "  - {name: buy, label: buy, positive: [\"yes\"]}"
        echo "model: {kind: mlp, hidden: [8]}"
        echo "train: {epochs: 2, batch: 8, seed: 1}"
    } >"$T/$1.yaml"
}

write_cfg good train.csv
run train --config "$T/good.yaml" --out "$T/m.ptm"
if ! expect_ok || [ ! -s "$T/m.ptm" ]; then
    fail "training the small model for the model-file cases"
    echo "$FAILS failure(s)"
    exit 1
fi

# ---- bad data files ----------------------------------------------------------

# malformed row: an unterminated quote on line 6 (data row 5)
sed 's/^5,city2/5,"city2/' "$T/train.csv" >"$T/quote.csv"
write_cfg quote "$T/quote.csv"
run train --config "$T/quote.yaml"
expect_fail "$T/quote.csv:6:" "quote"

# wrong column count on line 8
sed 's/^7,city1,dev1,/7,city1,/' "$T/train.csv" >"$T/cols.csv"
write_cfg cols "$T/cols.csv"
run train --config "$T/cols.yaml"
expect_fail "$T/cols.csv:8: expected 7 fields, found 6"

# wrong delimiter: a tab-separated config on a comma file
write_cfg tab "$T/train.csv" '  format: {delimiter: "\t"}'
run train --config "$T/tab.yaml"
expect_fail "$T/train.csv:1:" "'city'"
write_cfg tab2 "$T/train.csv" '  format: {delimiter: "\t", header: false, columns: [id, city, device, age, spend, click, buy]}'
run train --config "$T/tab2.yaml"
expect_fail "$T/train.csv:1: expected 7 fields, found 1" "delimiter"

# a feature column the file does not have
write_cfg unk train.csv
sed 's/numeric: \[age, spend\]/numeric: [age, spend, income]/' "$T/unk.yaml" >"$T/unk2.yaml"
run train --config "$T/unk2.yaml"
expect_fail "$T/train.csv:1:" "'income'"

# a non-numeric value in a numeric column, line 10
sed 's/^9,city0,dev1,29/9,city0,dev1,old/' "$T/train.csv" >"$T/nonnum.csv"
write_cfg nonnum "$T/nonnum.csv"
run train --config "$T/nonnum.yaml"
expect_fail "$T/nonnum.csv:10:" "'age'" "'old'"

# an empty data file; a header without rows; a missing data file
: >"$T/empty.csv"
write_cfg empty "$T/empty.csv"
run train --config "$T/empty.yaml"
expect_fail "$T/empty.csv:1:" "empty"
head -n 1 "$T/train.csv" >"$T/header_only.csv"
write_cfg header_only "$T/header_only.csv"
run train --config "$T/header_only.yaml"
expect_fail "$T/header_only.csv" "no data rows"
write_cfg nofile "$T/nothere.csv"
run train --config "$T/nofile.yaml"
expect_fail "$T/nothere.csv"

# eval without the label column; predict without a feature column
cut -d, -f1-6 "$T/train.csv" >"$T/nolabel.csv"
cut -d, -f1,3- "$T/train.csv" >"$T/nocity.csv"
run eval --model "$T/m.ptm" --data "$T/nolabel.csv"
expect_fail "$T/nolabel.csv:1:" "'buy'"
run predict --model "$T/m.ptm" --data "$T/nocity.csv" --out "$T/p_nocity.csv"
expect_fail "$T/nocity.csv:1:" "'city'"
[ -e "$T/p_nocity.csv" ] && fail "a failed predict left its output file"
run predict --model "$T/m.ptm" --data "$T/nolabel.csv" --out "$T/p_nolabel.csv"
if expect_ok; then [ "$(wc -l <"$T/p_nolabel.csv")" -eq 41 ] || fail "predict needs no labels: want 41 lines"; fi
run eval --model "$T/m.ptm" --data "$T/nothere.csv"
expect_fail "$T/nothere.csv"
run predict --model "$T/m.ptm" --data "$T/train.csv" --out "$T/no/such/dir/p.csv"
expect_fail "$T/no/such/dir/p.csv"

# ---- bad configs -------------------------------------------------------------

: >"$T/c_empty.yaml"
run train --config "$T/c_empty.yaml"
expect_fail "$T/c_empty.yaml" "empty"

echo "hello" >"$T/c_scalar.yaml"
run train --config "$T/c_scalar.yaml"
expect_fail "$T/c_scalar.yaml"

printf 'data: [unclosed\n' >"$T/c_syntax.yaml"
run train --config "$T/c_syntax.yaml"
expect_fail "$T/c_syntax.yaml:" "YAML"

write_cfg c_key train.csv
n=$(wc -l <"$T/c_key.yaml")
echo "bogus_key: 1" >>"$T/c_key.yaml"
run train --config "$T/c_key.yaml"
expect_fail "$T/c_key.yaml:$((n + 1)):" "bogus_key"

sed 's/train: {epochs: 2,/train: {epochs: two,/' "$T/good.yaml" >"$T/c_type.yaml"
run train --config "$T/c_type.yaml"
expect_fail "$T/c_type.yaml:" "epochs"

run train --config "$T/nothere.yaml"
expect_fail "$T/nothere.yaml"

# ---- bad model files ---------------------------------------------------------

size=$(wc -c <"$T/m.ptm")
head -c $((size / 2)) "$T/m.ptm" >"$T/half.ptm"
head -c 10 "$T/m.ptm" >"$T/tiny.ptm"
head -c $((size - 1)) "$T/m.ptm" >"$T/short1.ptm"

# flip_byte SRC DST OFFSET: copy with the byte at OFFSET xor 1
flip_byte() {
    cp "$1" "$2"
    b=$(dd if="$1" bs=1 skip="$3" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    printf "\\$(printf %o $((b ^ 1)))" | dd of="$2" bs=1 seek="$3" conv=notrunc 2>/dev/null
    if cmp -s "$1" "$2"; then fail "flip_byte did not change $2"; fi
}
flip_byte "$T/m.ptm" "$T/flip_w.ptm" $((size - 100))   # in the weights
flip_byte "$T/m.ptm" "$T/flip_m.ptm" 100               # in the metadata
flip_byte "$T/m.ptm" "$T/flip_magic.ptm" 0             # the magic

for m in half tiny short1 flip_w flip_m flip_magic; do
    run inspect "$T/$m.ptm"
    expect_fail "$T/$m.ptm"
done
# eval and predict load models the same way: two kinds of damage suffice
for m in half flip_w; do
    run eval --model "$T/$m.ptm" --data "$T/train.csv"
    expect_fail "$T/$m.ptm"
    run predict --model "$T/$m.ptm" --data "$T/train.csv" --out "$T/p_$m.csv"
    expect_fail "$T/$m.ptm"
    [ -e "$T/p_$m.csv" ] && fail "predict with a bad model wrote its output"
done
run inspect "$T/nothere.ptm"
expect_fail "$T/nothere.ptm"

# ---- --max-bad-rows ----------------------------------------------------------

# two bad rows: line 8 (field count) and line 10 (not a number)
sed 's/^7,city1,dev1,/7,city1,/; s/^9,city0,dev1,29/9,city0,dev1,old/' "$T/train.csv" >"$T/bad2.csv"
write_cfg bad2 "$T/bad2.csv"
run train --config "$T/bad2.yaml" --max-bad-rows 2 --out "$T/m2.ptm"
if expect_ok; then
    [ -s "$T/m2.ptm" ] || fail "--max-bad-rows 2: no model written"
    grep -q "bad2.csv:8:" "$T/err" || fail "--max-bad-rows 2: the skipped row 8 is not reported"
fi
run train --config "$T/bad2.yaml" --max-bad-rows 1
expect_fail "$T/bad2.csv:10:" "1 bad rows"
run train --config "$T/bad2.yaml"
expect_fail "$T/bad2.csv:8: expected 7 fields, found 6"

run eval --model "$T/m.ptm" --data "$T/bad2.csv" --max-bad-rows 2 --json
if expect_ok; then
    grep -q '"rows": *38' "$T/out" && grep -q '"bad_rows": *2' "$T/out" ||
        fail "eval --max-bad-rows 2: want rows 38 and bad_rows 2 in the JSON"
fi
run eval --model "$T/m.ptm" --data "$T/bad2.csv" --max-bad-rows 1
expect_fail "$T/bad2.csv:10:" "1 bad rows"
run predict --model "$T/m.ptm" --data "$T/bad2.csv" --max-bad-rows 2 --out "$T/p2.csv"
if expect_ok; then [ "$(wc -l <"$T/p2.csv")" -eq 39 ] || fail "predict --max-bad-rows 2: want 39 lines"; fi
run predict --model "$T/m.ptm" --data "$T/bad2.csv" --max-bad-rows 1 --out "$T/p1.csv"
expect_fail "$T/bad2.csv:10:" "1 bad rows"
[ -e "$T/p1.csv" ] && fail "a failed predict left its output file"

# ---- usage errors ------------------------------------------------------------

run train --config "$T/good.yaml" --bogus
expect_usage
run train
expect_usage
run train --config
expect_usage
run train --config "$T/good.yaml" --threads abc
expect_usage
run train --config "$T/good.yaml" --seed -1
expect_usage
run train --config "$T/good.yaml" --max-bad-rows x
expect_usage
run train --config "$T/good.yaml" --resume
expect_usage
run train --config "$T/good.yaml" extra
expect_usage
run eval --data "$T/train.csv"
expect_usage
run eval --model "$T/m.ptm"
expect_usage
run eval --model "$T/m.ptm" --data "$T/train.csv" --threshold 2
expect_usage
run eval --model "$T/m.ptm" --data "$T/train.csv" --threads abc
expect_usage
run eval --model "$T/m.ptm" --data "$T/train.csv" --out x
expect_usage
run predict --model "$T/m.ptm" --data "$T/train.csv"
expect_usage
run predict --model "$T/m.ptm" --data "$T/train.csv" --out "$T/x.csv" --json
expect_usage
run inspect
expect_usage
run inspect "$T/m.ptm" "$T/m.ptm"
expect_usage
run inspect --bogus "$T/m.ptm"
expect_usage
run frobnicate
[ "$RC" -eq 2 ] || fail "unknown command: want exit 2"
run
[ "$RC" -eq 2 ] || fail "no command: want exit 2"

# ---- --help ------------------------------------------------------------------

for c in train eval predict inspect; do
    run "$c" --help
    if expect_ok; then
        [ -s "$T/err" ] && fail "--help wrote to stderr"
        head -n 1 "$T/out" | grep -q "^usage: polytask $c" || fail "--help: want 'usage: polytask $c' on stdout"
    fi
done
run --help
if expect_ok; then head -n 1 "$T/out" | grep -q "^usage: polytask" || fail "--help: want usage on stdout"; fi
run --version
if expect_ok; then grep -q "^polytask [0-9]" "$T/out" || fail "--version: want the version on stdout"; fi

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "all bad-input checks passed"
exit 0
