#!/bin/sh
# test_recommend_cli.sh: polytask recommend train and recommend (queries).
#
# Usage: sh test_recommend_cli.sh POLYTASK_BINARY REPO_ROOT
#
# 1. examples/recommend/retail_ii.yaml (Online Retail II, 393,614 purchases):
#    item2item beats the popularity baseline's NDCG@10 by more than 1.15x
#    under leave-last-out, and the popularity figures are those of
#    shared/bench/peers/torch_bpr.py (HR@10 0.08127, NDCG@10 0.05400).
# 2. The raw invoice lines (three files, Quantity as weight), Amazon Beauty's
#    review JSON lines (a bad line is an error at its line), and the Taobao
#    event log through a samples: section load and train; the Taobao model's
#    catalogue (categories) backs --category and --exclude-category.
# 3. A model written with --out answers --user (known, unknown: cold start,
#    --json), never returns what the user bought, honours --allow and
#    --include-seen, and batch mode writes user,rank,item,score rows for
#    --all and --users.
# 4. Errors: a missing interactions file, a config error, a file that is not
#    a recommender model, a corrupted model; usage errors exit 2.
set -u
BIN=$1
ROOT=$2
SHARED=$ROOT/../shared
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_rec_cli.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
. "$ROOT/tests/cli/lib.sh"

jnum() { # jnum FILE PATH...: a number inside the one-line JSON report (python3 is in Debian's base)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: d=d[k]
print(d)' "$@"
}

# 1. the benchmark data set, leave-last-out
run recommend train --config "$ROOT/examples/recommend/retail_ii.yaml" --no-refit --json
if expect_ok; then
    cp "$T/out" "$T/rep.json"
    ndcg=$(jnum "$T/rep.json" eval model ndcg)
    pop=$(jnum "$T/rep.json" eval popularity ndcg)
    pophr=$(jnum "$T/rep.json" eval popularity hr)
    python3 -c "import sys; sys.exit(0 if $ndcg >= 1.15 * $pop else 1)" || fail "item2item NDCG@10 $ndcg not 1.15x popularity $pop"
    [ "$(printf '%.5f' "$pop")" = "0.05400" ] || fail "popularity NDCG@10 $pop, the peer's is 0.05400"
    [ "$(printf '%.5f' "$pophr")" = "0.08127" ] || fail "popularity HR@10 $pophr, the peer's is 0.08127"
    [ "$(jnum "$T/rep.json" interactions)" = 393614 ] || fail "want 393614 interactions"
fi

# 2. raw invoices and an event log
run recommend train --config "$ROOT/examples/recommend/retail_ii_raw.yaml" --no-refit --json
if expect_ok; then
    [ "$(jnum "$T/out" skipped)" -gt 100000 ] || fail "lines without a customer or cancelled should be skipped"
fi
run recommend train --config "$ROOT/examples/recommend/taobao.yaml" --out "$T/tb.ptr" --json
expect_ok && { [ "$(jnum "$T/out" interactions)" = 4321 ] || fail "want the 4321 Taobao events"; }
# category filters: the catalogue's categories (the log's category_id column)
TAOBAO=$SHARED/data/taobao_userbehavior_43users/UserBehavior_43users.csv.gz
run recommend --model "$T/tb.ptr" --user 1 -k 5 --category 4756105 --json
expect_ok && { python3 - "$T/out" "$TAOBAO" <<'PY' || fail "--category returns items of other categories"
import gzip, json, sys
cat = {l.split(",")[1]: l.split(",")[2] for l in gzip.open(sys.argv[2], "rt")}
items = [x["item"] for x in json.load(open(sys.argv[1]))["items"]]
assert len(items) == 5 and all(cat[i] == "4756105" for i in items), items
PY
}
run recommend --model "$T/tb.ptr" --user 1 -k 20 --exclude-category 4756105 --json
expect_ok && { python3 - "$T/out" "$TAOBAO" <<'PY' || fail "--exclude-category"
import gzip, json, sys
cat = {l.split(",")[1]: l.split(",")[2] for l in gzip.open(sys.argv[2], "rt")}
items = [x["item"] for x in json.load(open(sys.argv[1]))["items"]]
assert len(items) == 20 and all(cat[i] != "4756105" for i in items), items
PY
}
run recommend --model "$T/tb.ptr" --user 1 --category no-such-category
expect_fail "unknown category 'no-such-category'"

# Amazon Beauty's raw review JSON lines
run recommend train --config "$ROOT/examples/recommend/amazon_beauty.yaml" --no-refit --json
expect_ok && { [ "$(jnum "$T/out" interactions)" = 5269 ] || fail "want the 5269 Amazon reviews"; }
printf '{"u": "a", "i": "x", "t": 1}\n{"u": "a", "i": "y", "t": 2}\nnot json\n' >"$T/bad.jsonl"
printf 'recommend:\n  interactions:\n    path: bad.jsonl\n    format: {type: jsonl}\n    columns: {user: u, item: i, time: t}\n' >"$T/jl.yaml"
run recommend train --config "$T/jl.yaml"
expect_fail "bad.jsonl:3:" "not a JSON object"

# ranking stage: Taobao candidates scored by the example MMoE on build's features
sed "s|\.\./\.\./\.\./shared|$SHARED|" "$ROOT/examples/taobao/mmoe.yaml" | sed 's/epochs: 10/epochs: 2/' >"$T/mmoe.yaml"
run train --config "$T/mmoe.yaml" --out "$T/mmoe.ptm"
expect_ok
run recommend rank --config "$T/mmoe.yaml" --model "$T/tb.ptr" --rank-model "$T/mmoe.ptm" --all -k 6 --candidates 40 \
    --ctr cart --cvr buy --per-category 2 --out "$T/ranked.csv"
if expect_ok; then
    python3 - "$T/ranked.csv" "$TAOBAO" <<'PY' || fail "ranked output"
import csv, gzip, sys
from collections import defaultdict
cat = {l.split(",")[1]: l.split(",")[2] for l in gzip.open(sys.argv[2], "rt")}
bought = defaultdict(set)
for l in gzip.open(sys.argv[2], "rt"):
    f = l.split(",")
    bought[f[0]].add(f[1])
rows = list(csv.DictReader(open(sys.argv[1])))
by = defaultdict(list)
for r in rows:
    by[r["user"]].append(r)
assert len(by) == 43, len(by)
for u, rs in by.items():
    assert [int(r["rank"]) for r in rs] == list(range(1, len(rs) + 1))
    assert len(rs) == 6, (u, len(rs))
    for r in rs:
        assert abs(float(r["score"]) - float(r["p_ctr"]) * float(r["p_cvr"])) <= 1e-4 * max(1e-9, float(r["score"])) + 1e-9, r
        assert 1 <= int(r["retrieval_rank"]) <= 40 and r["item"] not in bought[u], r
    cats = [cat[r["item"]] for r in rs]
    # at most 2 per category unless fewer than 6 candidates in other categories were left
    assert max(cats.count(c) for c in cats) <= 2 or len(set(cats)) < 3, cats
PY
fi
run recommend rank --config "$T/mmoe.yaml" --model "$T/tb.ptr" --rank-model "$T/mmoe.ptm" --all --objective revenue --out "$T/rev.csv"
expect_fail "revenue objective needs prices"
run recommend rank --config "$T/mmoe.yaml" --model "$T/tb.ptr" --rank-model "$T/mmoe.ptm" --all --ctr click --out "$T/x.csv"
expect_fail "no task 'click'"
run recommend rank --config "$T/mmoe.yaml" --model "$T/tb.ptr" --all --out "$T/x.csv"
expect_usage

# 3. a model on the small Online Retail sample, and queries
cat >"$T/small.yaml" <<YAML
recommend:
  interactions:
    path: $SHARED/bench/data/rec/online_retail.csv.gz
    columns: {user: user_id, item: item_id, time: timestamp}
  model: item2item
YAML
run recommend train --config "$T/small.yaml" --out "$T/small.ptr"
expect_ok && { grep -q "^popularity " "$T/out" || fail "the table shows the popularity baseline"; }
[ -s "$T/small.ptr" ] || fail "no model file"
user=$(zcat "$SHARED/bench/data/rec/online_retail.csv.gz" | sed -n 2p | cut -d, -f1)
run recommend --model "$T/small.ptr" --user "$user" -k 5 --json
if expect_ok; then
    cp "$T/out" "$T/u.json"
    python3 - "$T/u.json" "$SHARED/bench/data/rec/online_retail.csv.gz" "$user" <<'PY' || fail "bad answer for a known user"
import gzip, json, sys
ans = json.load(open(sys.argv[1]))
bought = {l.split(",")[1] for l in gzip.open(sys.argv[2], "rt") if l.split(",")[0] == sys.argv[3]}
items = [x["item"] for x in ans["items"]]
assert ans["known"] is True and len(items) == 5 and len(set(items)) == 5, ans
assert not set(items) & bought, (items, bought)
scores = [x["score"] for x in ans["items"]]
assert scores == sorted(scores, reverse=True), scores
PY
fi
run recommend --model "$T/small.ptr" --user no-such-user -k 3
expect_ok && { grep -q "unknown: cold start" "$T/out" || fail "an unknown user is said to be one"; }
[ "$(grep -c '^ *[0-9]' "$T/out")" = 3 ] || fail "want 3 items for the unknown user"
first=$(sed -n 1p "$T/u.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][1]["item"])')
printf '%s\n' "$first" >"$T/allow.txt"
run recommend --model "$T/small.ptr" --user "$user" -k 5 --allow "$T/allow.txt" --json
expect_ok && { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [x["item"] for x in d["items"]] == [sys.argv[2]]' "$T/out" "$first" || fail "--allow"; }
run recommend --model "$T/small.ptr" --user "$user" -k 50 --include-seen --json
expect_ok && { python3 - "$T/out" "$SHARED/bench/data/rec/online_retail.csv.gz" "$user" <<'PY' || fail "--include-seen returns bought items"
import gzip, json, sys
items = {x["item"] for x in json.load(open(sys.argv[1]))["items"]}
bought = {l.split(",")[1] for l in gzip.open(sys.argv[2], "rt") if l.split(",")[0] == sys.argv[3]}
assert items & bought
PY
}
run recommend --model "$T/small.ptr" --all -k 3 --out "$T/all.csv"
if expect_ok; then
    [ "$(sed -n 1p "$T/all.csv")" = "user,rank,item,score" ] || fail "batch header"
    users=$(zcat "$SHARED/bench/data/rec/online_retail.csv.gz" | sed 1d | cut -d, -f1 | sort -u | wc -l)
    [ "$(($(wc -l <"$T/all.csv") - 1))" = "$((users * 3))" ] || fail "want 3 rows for each of $users users"
fi
printf '%s\nno-such-user\n' "$user" >"$T/users.txt"
run recommend --model "$T/small.ptr" --users "$T/users.txt" -k 2 --out "$T/some.csv"
expect_ok && { [ "$(wc -l <"$T/some.csv")" = 5 ] || fail "--users: 2 users x 2 rows + header"; }

# 4. errors
sed "s|online_retail.csv.gz|missing.csv.gz|" "$T/small.yaml" >"$T/missing.yaml"
run recommend train --config "$T/missing.yaml"
expect_fail "missing.csv.gz"
printf 'recommend:\n  interactions: {path: x.csv}\n  model: deep\n' >"$T/bad.yaml"
run recommend train --config "$T/bad.yaml"
expect_fail "bad.yaml:3:" "'model' must be"
printf 'not a model' >"$T/junk.ptr"
run recommend --model "$T/junk.ptr" --user x
expect_fail "junk.ptr"
cp "$T/small.ptr" "$T/torn.ptr"
truncate -s 1000 "$T/torn.ptr"
run recommend --model "$T/torn.ptr" --user x
expect_fail "torn.ptr"
run recommend --model "$T/small.ptr"
expect_usage
run recommend --model "$T/small.ptr" --all
expect_usage
run recommend train
expect_usage
run recommend train --config "$T/small.yaml" --bogus
expect_usage
run recommend --help
expect_ok && { grep -q "usage: polytask recommend" "$T/out" || fail "--help"; }
run recommend train --help
expect_ok && { grep -q "usage: polytask recommend train" "$T/out" || fail "train --help"; }

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "ok"
