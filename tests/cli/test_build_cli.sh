#!/bin/sh
# test_build_cli.sh: polytask build (event log -> sample tables), train from a
# samples: section, and eval --score.
#
# Usage: sh test_build_cli.sh POLYTASK_BINARY REPO_ROOT
#
# 1. The shipped examples build: Taobao (no header, unix times, not in time
#    order; mmoe.yaml and esmm.yaml with click negatives), REES46 (ISO times
#    with " UTC", sessions, attributes) and UCI Online Retail (every line a
#    purchase, rows without a customer, bought negatives, date split). Each
#    --out folder holds train/valid/test.csv and build.json; the headers are
#    the report's "columns"; the row counts are the report's; the split is by
#    time; --json is one JSON line with the known event counts.
#    --assume-sorted on the unsorted Taobao log fails at its line 56.
# 2. The cache: a second build of the same inputs prints the same report and
#    rewrites nothing; --force, a changed samples: section, a touched log or
#    a deleted output file rebuild; a cached build with --max-bad-rows 3 does
#    not let a later build without it pass.
# 3. train --config on a copy of examples/taobao/mmoe.yaml builds into
#    <name>.samples/ beside the config and trains; a second run skips the build.
#    eval --score COLUMN reports AUC and GAUC of a numeric feature only.
# 4. Bad event lines (unknown type, bad timestamp, wrong field count) and
#    --max-bad-rows; empty and missing logs; an --out that cannot be made;
#    samples: config errors; usage.
#    Every runtime failure exits 1 with one line "polytask: FILE[:LINE]: ..."
#    on stderr, as tests/cli/test_bad_input.sh checks for train and eval.
# The data are tiny (at most 20,000 events); the model is 2 epochs.
set -u
BIN=$1
ROOT=$2
SHARED=$ROOT/../shared/data
TAOBAO=$SHARED/taobao_userbehavior_43users/UserBehavior_43users.csv.gz
REES46=$SHARED/rees46_events_head1000/2019-Oct-head1000.csv.gz
RETAIL=$SHARED/uci_online_retail_sample20k/online_retail_sample20k.csv.gz
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_build_cli.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM

for f in "$TAOBAO" "$REES46" "$RETAIL" "$ROOT/examples/taobao/mmoe.yaml" "$ROOT/examples/taobao/esmm.yaml" \
    "$ROOT/examples/events/rees46.yaml" "$ROOT/examples/events/retail.yaml"; do
    [ -r "$f" ] || { echo "FAIL: cannot read $f"; exit 1; }
done

. "$ROOT/tests/cli/lib.sh"

# expect_fail_at FILE NEEDLE...: expect_fail, and the line starts
# "polytask: FILE:LINE: " with some line number
expect_fail_at() {
    file=$1
    shift
    expect_fail "$@" || return 1
    line=$(sed -n "s|^polytask: $file:\([0-9][0-9]*\): .*|\1|p" "$T/err1")
    [ -n "$line" ] && [ "$line" -ge 1 ] || fail "want 'polytask: $file:LINE: ...'"
}

# jget FILE KEY: a top-level number or true/false/null of a one-line JSON report
jget() {
    grep -o "\"$2\": *[-+0-9.eEtruefalsn]*" "$1" | head -n 1 | sed 's/.*: *//'
}
# jsamples FILE SPLIT: "samples": {"train": N, ...} of the report
jsamples() {
    grep -o '"samples": *{[^}]*}' "$1" | grep -o "\"$2\": *[0-9]*" | sed 's/.*: *//'
}
# jcolumns FILE: the report's "columns" as a CSV header
jcolumns() {
    grep -o '"columns": *\[[^]]*\]' "$1" | sed 's/^"columns": *\[//; s/\]$//; s/"//g; s/, */,/g'
}
# json_ok FILE: FILE is one JSON object (checked with python3 where there is one)
json_ok() {
    [ "$(wc -l <"$1")" -eq 1 ] && [ "$(head -c 1 "$1")" = "{" ] || return 1
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not isinstance(r, dict))' "$1" 2>/dev/null
        return $?
    fi
    return 0
}
# ts_range FILE: "MIN MAX" of the first column (ts) over the data rows, or nothing
ts_range() {
    awk -F, 'NR > 1 { if (n == 0 || $1 < lo) lo = $1; if (n == 0 || $1 > hi) hi = $1; n++ }
             END { if (n) printf "%d %d\n", lo, hi }' "$1"
}
# has_cols FILE COL...: the header of FILE has every COL
has_cols() {
    f=$1
    shift
    h=",$(head -n 1 "$f"),"
    for c in "$@"; do
        case $h in *",$c,"*) ;; *) fail "$f: header lacks column '$c'"; return 1 ;; esac
    done
    return 0
}

# ---- 1. the shipped examples ---------------------------------------------------

# check_build NAME EVENTS MISSING_IDS SORTED LAST_COLUMNS COLUMN...: the build of
# the last command into $T/NAME: files, header, counts, time split
check_build() {
    name=$1 events=$2 missing=$3 sorted=$4 last=$5
    shift 5
    d=$T/$name
    cp "$T/out" "$T/$name.json"
    json_ok "$T/$name.json" || fail "$name: --json: want one JSON object on stdout"
    for f in train.csv valid.csv test.csv build.json; do
        [ -s "$d/$f" ] || fail "$name: no $f in the --out folder"
    done
    [ "$(jget "$T/$name.json" events)" = "$events" ] || fail "$name: events '$(jget "$T/$name.json" events)', want $events"
    [ "$(jget "$T/$name.json" bad_rows)" = 0 ] || fail "$name: bad_rows '$(jget "$T/$name.json" bad_rows)', want 0"
    [ "$(jget "$T/$name.json" missing_ids)" = "$missing" ] || fail "$name: missing_ids '$(jget "$T/$name.json" missing_ids)', want $missing"
    [ "$(jget "$T/$name.json" sorted_input)" = "$sorted" ] || fail "$name: sorted_input '$(jget "$T/$name.json" sorted_input)', want $sorted"
    grep -q "\"events\": *$events," "$d/build.json" || fail "$name: build.json does not hold \"events\": $events"
    hdr=$(head -n 1 "$d/train.csv")
    [ "$hdr" = "$(jcolumns "$T/$name.json")" ] || fail "$name: train.csv header differs from the report's columns"
    case $hdr in "ts,"*",$last") ;; *) fail "$name: header '$hdr': want ts first and $last last" ;; esac
    has_cols "$d/train.csv" "$@"
    prev=
    for s in train valid test; do
        [ "$(head -n 1 "$d/$s.csv")" = "$hdr" ] || fail "$name: $s.csv header differs from train.csv's"
        rows=$(($(wc -l <"$d/$s.csv") - 1))
        want=$(jsamples "$T/$name.json" $s)
        [ "$rows" = "$want" ] || fail "$name: $s.csv has $rows rows, the report says $want"
        r=$(ts_range "$d/$s.csv")
        if [ -z "$r" ]; then
            fail "$name: $s.csv has no rows"
        elif [ -n "$prev" ] && [ "${r% *}" -le "$prev" ]; then
            fail "$name: $s starts at ts ${r% *}, not after the previous split's last ts $prev"
        fi
        prev=${r#* }
    done
}

run build --config "$ROOT/examples/taobao/mmoe.yaml" --out "$T/mmoe" --json
expect_ok && check_build mmoe 4321 0 false "cart,fav,buy" user_id item_id category_id hour since_last seq_items i_pv u_buy_7d
grep -q "UserBehavior_43users.csv.gz:56: .*not in time order" "$T/err" ||
    fail "mmoe: want a note that the Taobao log is not in time order (line 56)"
run build --config "$ROOT/examples/taobao/esmm.yaml" --out "$T/esmm" --json
if expect_ok && check_build esmm 4321 0 false "click,buy" user_id item_id since_last seq_items; then
    # click negatives: real views are 1, sampled items 0
    neg=$(jget "$T/esmm.json" negatives)
    [ -n "$neg" ] && [ "$neg" -gt 0 ] || fail "esmm: negatives '$neg', want > 0"
    clicks=$(awk -F, 'NR > 1 { print $(NF - 1) }' "$T/esmm/train.csv" | sort -u | tr '\n' ' ')
    [ "$clicks" = "0 1 " ] || fail "esmm: click values '$clicks', want 0 and 1"
fi
run build --config "$ROOT/examples/events/rees46.yaml" --out "$T/rees46" --json
expect_ok && check_build rees46 1000 0 true "cart,purchase" user_id product_id brand price since_last seq_items u_view_5m
run build --config "$ROOT/examples/events/retail.yaml" --out "$T/retail" --json
if expect_ok && check_build retail 14922 5078 false "bought,repeat" CustomerID StockCode UnitPrice Country since_last seq_items; then
    [ "$(jget "$T/retail.json" lines)" = 20000 ] || fail "retail: lines '$(jget "$T/retail.json" lines)', want 20000"
    bought=$(awk -F, 'NR > 1 { print $(NF - 1) }' "$T/retail/train.csv" | sort -u | tr '\n' ' ')
    [ "$bought" = "0 1 " ] || fail "retail: bought values '$bought', want 0 and 1"
    # the date split: valid from 2011-10-01, test from 2011-11-01 (UTC)
    [ "$(ts_range "$T/retail/valid.csv" | cut -d' ' -f1)" -ge 1317427200 ] &&
        [ "$(ts_range "$T/retail/train.csv" | cut -d' ' -f2)" -lt 1317427200 ] &&
        [ "$(ts_range "$T/retail/test.csv" | cut -d' ' -f1)" -ge 1320105600 ] ||
        fail "retail: rows on the wrong side of valid_from 2011-10-01 / test_from 2011-11-01"
fi

# the summary without --json
run build --config "$ROOT/examples/events/rees46.yaml" --out "$T/rees46_text"
if expect_ok; then
    grep -q "^events 1000 (1000 lines, 0 bad" "$T/out" || fail "build: want a line 'events 1000 (1000 lines, 0 bad ...'"
    grep -q "written to $T/rees46_text" "$T/out" || fail "build: want 'written to DIR'"
    [ -s "$T/rees46_text/train.csv" ] || fail "build without --json wrote no train.csv"
fi

# --assume-sorted: fine on the sorted REES46 log, an error on the Taobao one
run build --config "$ROOT/examples/events/rees46.yaml" --out "$T/rees46_sorted" --assume-sorted --json
if expect_ok; then
    [ "$(jget "$T/out" sorted_input)" = true ] || fail "--assume-sorted on a sorted log: want sorted_input true"
    cmp -s "$T/rees46/train.csv" "$T/rees46_sorted/train.csv" || fail "--assume-sorted changed REES46's train.csv"
fi
run build --config "$ROOT/examples/taobao/mmoe.yaml" --out "$T/mmoe_sorted" --assume-sorted
expect_fail "UserBehavior_43users.csv.gz:56:" "not sorted" "--assume-sorted"
[ -e "$T/mmoe_sorted/train.csv" ] && fail "--assume-sorted failed but left train.csv"

# ---- 2. the cache ------------------------------------------------------------------

m1=$(stat -c %Y "$T/mmoe/train.csv")
sleep 1
run build --config "$ROOT/examples/taobao/mmoe.yaml" --out "$T/mmoe" --json
if expect_ok; then
    cmp -s "$T/out" "$T/mmoe.json" || fail "second build: the report differs from the first"
    grep -q "up to date" "$T/err" || fail "second build: want 'up to date' on stderr"
    [ "$(stat -c %Y "$T/mmoe/train.csv")" = "$m1" ] || fail "second build rewrote train.csv"
fi
run build --config "$ROOT/examples/taobao/mmoe.yaml" --out "$T/mmoe"
if expect_ok; then
    grep -q "^events 4321 (4321 lines" "$T/out" || fail "second build without --json: want the summary"
fi
run build --config "$ROOT/examples/taobao/mmoe.yaml" --out "$T/mmoe" --force --json
if expect_ok; then
    grep -q "up to date" "$T/err" && fail "--force: the build was skipped"
    [ "$(stat -c %Y "$T/mmoe/train.csv")" != "$m1" ] || fail "--force did not rewrite train.csv"
    [ "$(jget "$T/out" events)" = 4321 ] || fail "--force: events '$(jget "$T/out" events)', want 4321"
    for s in train valid test; do
        [ "$(jsamples "$T/out" $s)" = "$(jsamples "$T/mmoe.json" $s)" ] || fail "--force: $s sample count changed"
    done
fi

# ---- 3. train from a samples: section, eval --score ------------------------------------

mkdir "$T/tr"
sed -e "s|^\( *events: \).*|\1$TAOBAO|" -e 's/^\( *epochs: \).*/\12/' "$ROOT/examples/taobao/mmoe.yaml" >"$T/tr/mmoe.yaml"
grep -q "events: $TAOBAO" "$T/tr/mmoe.yaml" && grep -q "epochs: 2" "$T/tr/mmoe.yaml" ||
    fail "could not derive the train config from examples/taobao/mmoe.yaml"
run train --config "$T/tr/mmoe.yaml" --out "$T/tr/m.ptm"
TRAINED=0
if expect_ok; then
    for f in train.csv valid.csv test.csv build.json; do
        [ -s "$T/tr/mmoe.samples/$f" ] || fail "train --config: no mmoe.samples/$f beside the config"
    done
    [ -s "$T/tr/m.ptm" ] && TRAINED=1 || fail "train --config: no model written"
    grep -q "up to date" "$T/err" && fail "first train: the build was skipped"
    grep -q "^test metrics (674 rows)" "$T/out" || fail "train: want 'test metrics (674 rows)'"
    cmp -s "$T/tr/mmoe.samples/train.csv" "$T/mmoe/train.csv" || fail "train's build differs from polytask build's"
fi
if [ "$TRAINED" = 1 ]; then
    m1=$(stat -c %Y "$T/tr/mmoe.samples/train.csv")
    run train --config "$T/tr/mmoe.yaml" --out "$T/tr/m2.ptm"
    if expect_ok; then
        grep -q "up to date" "$T/err" || fail "second train: want the build skipped ('up to date' on stderr)"
        [ "$(stat -c %Y "$T/tr/mmoe.samples/train.csv")" = "$m1" ] || fail "second train rewrote the samples"
        [ -s "$T/tr/m2.ptm" ] || fail "second train: no model written"
    fi

    TEST=$T/tr/mmoe.samples/test.csv
    run eval --model "$T/tr/m.ptm" --data "$TEST" --score i_pv --group-by user_id
    if expect_ok; then
        hdr=$(grep '^task ' "$T/out")
        case $hdr in *" auc "*gauc*) ;; *) fail "eval --score: want auc and gauc columns" ;; esac
        case $hdr in *logloss*) fail "eval --score: a logloss column for a raw score" ;; esac
        grep -q '^buy  *674 ' "$T/out" || fail "eval --score: want a row for task buy with 674 rows"
    fi
    run eval --model "$T/tr/m.ptm" --data "$TEST" --score i_pv --group-by user_id --json
    if expect_ok; then
        json_ok "$T/out" || fail "eval --score --json: want one JSON object"
        grep -q '"gauc"' "$T/out" || fail "eval --score --json: no gauc"
        grep -q '"logloss"' "$T/out" && fail "eval --score --json: logloss for a raw score"
        grep -q '"rows": *674' "$T/out" || fail "eval --score --json: want rows 674"
    fi
    run eval --model "$T/tr/m.ptm" --data "$TEST" --score item_id
    expect_fail "--score" "item_id" "numeric"
    run eval --model "$T/tr/m.ptm" --data "$TEST" --score no_such_column
    expect_fail "--score" "no_such_column"
    run eval --model "$T/tr/m.ptm" --data "$TEST" --score
    expect_usage
fi

# ---- 4. bad input --------------------------------------------------------------

# 40 REES46 events and a samples-only config that reads them
zcat "$REES46" | head -n 41 >"$T/ev.csv"
cat >"$T/base.yaml" <<EOF
samples:
  events: ev.csv
  columns: {user: user_id, item: product_id, type: event_type, time: event_time,
            category: category_id, session: user_session}
  time_format: iso8601
  event_types: [view, cart, purchase]
  exposure: view
  purchase: purchase
  labels:
    - {name: cart, event: cart, window: 10m}
  incomplete: mark
  features: {windows: [1m, all], sequence: 5}
EOF
# events_cfg NAME FILE: $T/NAME.yaml, the base config reading FILE
events_cfg() {
    sed "s|^  events: ev.csv|  events: $2|" "$T/base.yaml" >"$T/$1.yaml"
}

run build --config "$T/base.yaml" --out "$T/o_base" --json
if expect_ok; then
    [ "$(jget "$T/out" events)" = 40 ] || fail "40-event log: events '$(jget "$T/out" events)', want 40"
    [ "$(($(wc -l <"$T/o_base/train.csv") - 1))" = 40 ] || fail "40-event log: want 40 train rows"
fi
# the cache sees a changed samples: section and a touched log
sed 's/window: 10m/window: 20m/' "$T/base.yaml" >"$T/base2.yaml"
run build --config "$T/base2.yaml" --out "$T/o_base"
expect_ok && grep -q "up to date" "$T/err" && fail "a changed label window did not rebuild"
run build --config "$T/base2.yaml" --out "$T/o_base"
expect_ok && { grep -q "up to date" "$T/err" || fail "base2 built twice"; }
touch -d "2001-02-03 04:05:06" "$T/ev.csv"
run build --config "$T/base2.yaml" --out "$T/o_base"
expect_ok && grep -q "up to date" "$T/err" && fail "a touched events file did not rebuild"
rm "$T/o_base/train.csv"
run build --config "$T/base2.yaml" --out "$T/o_base"
if expect_ok; then
    grep -q "up to date" "$T/err" && fail "a deleted train.csv did not rebuild"
    [ -s "$T/o_base/train.csv" ] || fail "a deleted train.csv was not written again"
fi

# one bad line each: an unknown event type (line 5), a bad timestamp (month 13,
# line 7), a line with one field too many (line 9)
sed '5s/,view,/,click,/' "$T/ev.csv" >"$T/e_type.csv"
sed '7s/^2019-10-01 /2019-13-01 /' "$T/ev.csv" >"$T/e_ts.csv"
sed '9s/,view,/,view,extra,/' "$T/ev.csv" >"$T/e_nf.csv"
sed '5s/,view,/,click,/; 7s/^2019-10-01 /2019-13-01 /; 9s/,view,/,view,extra,/' "$T/ev.csv" >"$T/e3.csv"
for f in e_type e_ts e_nf e3; do events_cfg "$f" "$f.csv"; done
run build --config "$T/e_type.yaml" --out "$T/o_type"
expect_fail "$T/e_type.csv:5:" "'click'" "--max-bad-rows"
run build --config "$T/e_ts.yaml" --out "$T/o_ts"
expect_fail "$T/e_ts.csv:7:" "timestamp" "2019-13-01" "--max-bad-rows"
run build --config "$T/e_nf.yaml" --out "$T/o_nf"
expect_fail "$T/e_nf.csv:9:" "10 fields" "--max-bad-rows"
[ -e "$T/o_nf/train.csv" ] && fail "a failed build left train.csv"
run build --config "$T/e3.yaml" --out "$T/o3"
expect_fail "$T/e3.csv:5:" "--max-bad-rows"
run build --config "$T/e3.yaml" --out "$T/o3" --max-bad-rows 2
expect_fail "$T/e3.csv:9:" "2 bad rows" "--max-bad-rows"
run build --config "$T/e3.yaml" --out "$T/o3" --max-bad-rows 3 --json
if expect_ok; then
    [ "$(jget "$T/out" bad_rows)" = 3 ] || fail "--max-bad-rows 3: bad_rows '$(jget "$T/out" bad_rows)', want 3"
    [ "$(jget "$T/out" events)" = 37 ] || fail "--max-bad-rows 3: events '$(jget "$T/out" events)', want 37"
    [ "$(jget "$T/out" lines)" = 40 ] || fail "--max-bad-rows 3: lines '$(jget "$T/out" lines)', want 40"
    for l in 5 7 9; do
        grep -q "^polytask: warning: .*$T/e3.csv:$l:" "$T/err" || fail "--max-bad-rows 3: no warning for the skipped line $l"
    done
    [ "$(($(wc -l <"$T/o3/train.csv") - 1))" = 37 ] || fail "--max-bad-rows 3: want 37 train rows"
fi
# the cache does not hide the bad rows from a build that allows none
run build --config "$T/e3.yaml" --out "$T/o3"
expect_fail "$T/e3.csv:5:" "--max-bad-rows"

# an empty log, a missing log
: >"$T/empty.csv"
events_cfg empty empty.csv
run build --config "$T/empty.yaml" --out "$T/o_empty"
expect_fail "$T/empty.csv" "empty"
events_cfg nofile nothere.csv
run build --config "$T/nofile.yaml" --out "$T/o_nofile"
expect_fail "$T/nothere.csv"
# an --out folder that cannot be made: under a plain file
: >"$T/plain"
run build --config "$T/base.yaml" --out "$T/plain/sub"
expect_fail "$T/plain/sub"
run build --config "$T/base.yaml" --out "$T/plain"
expect_fail "$T/plain"
run build --config "$T/nothere.yaml" --out "$T/o_nocfg"
expect_fail "$T/nothere.yaml"
run build --config "$ROOT/data/census/census.yaml" --out "$T/o_census"
expect_fail "census.yaml" "samples"

# samples: config errors, each at FILE:LINE of the config
# cfg_err NAME SED_SCRIPT: $T/c_NAME.yaml, the base config edited
cfg_err() {
    sed "$2" "$T/base.yaml" >"$T/c_$1.yaml"
    cmp -s "$T/base.yaml" "$T/c_$1.yaml" && fail "c_$1.yaml: the edit changed nothing"
    run build --config "$T/c_$1.yaml" --out "$T/o_c_$1"
}
cfg_err noexp '/^  exposure:/d'
expect_fail_at "$T/c_noexp.yaml" "exposure" "missing"
cfg_err badexp 's/exposure: view/exposure: impression/'
expect_fail_at "$T/c_badexp.yaml" "exposure" "impression" "event_types"
cfg_err window 's/window: 10m/window: 3x/'
expect_fail "$T/c_window.yaml:$(grep -n 'window: 3x' "$T/c_window.yaml" | cut -d: -f1):" "window" "duration"
cfg_err labelev 's/event: cart, window/event: wishlist, window/'
expect_fail_at "$T/c_labelev.yaml" "'wishlist'" "event_types"
cfg_err everyline 's/^  exposure: view/  every_line: view\n  exposure: view/'
expect_fail_at "$T/c_everyline.yaml" "every_line" "columns.type"
cfg_err unknown 's/^  incomplete: mark/  incomplete: mark\n  bogus_key: 1/'
expect_fail "$T/c_unknown.yaml:$(grep -n 'bogus_key' "$T/c_unknown.yaml" | cut -d: -f1):" "bogus_key"
cfg_err fwindow 's/windows: \[1m, all\]/windows: [1m, 0h]/'
expect_fail_at "$T/c_fwindow.yaml" "windows"
cfg_err tz 's/^  time_format: iso8601/  time_format: iso8601\n  timezone: Mars/'
expect_fail "$T/c_tz.yaml:$(grep -n 'timezone' "$T/c_tz.yaml" | cut -d: -f1):" "timezone"
cfg_err dup 's/^    - {name: cart, event: cart, window: 10m}/&\n    - {name: cart, event: purchase, window: 1h}/'
expect_fail_at "$T/c_dup.yaml" "'cart'" "twice"

# ---- usage -----------------------------------------------------------------------

run build
expect_usage
run build --out "$T/o_usage"
expect_usage
run build --config
expect_usage
run build --config "$T/base.yaml" --bogus
expect_usage
run build --config "$T/base.yaml" extra
expect_usage
run build --config "$T/base.yaml" --max-bad-rows -1
expect_usage
run build --config "$T/base.yaml" --sort-memory 0
expect_usage
run build --config "$T/base.yaml" --threads abc
expect_usage
run build --help
if expect_ok; then
    [ -s "$T/err" ] && fail "--help wrote to stderr"
    head -n 1 "$T/out" | grep -q "^usage: polytask build" || fail "--help: want 'usage: polytask build' on stdout"
fi
run --help
expect_ok && { grep -q "^ *build " "$T/out" || fail "polytask --help does not list build"; }

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "all build CLI checks passed"
exit 0
