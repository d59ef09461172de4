#!/bin/sh
# test_models_cli.sh: polytask models (the model registry) end to end.
#
# Usage: sh test_models_cli.sh POLYTASK_BINARY REPO_ROOT
#
# 1. Two recommenders trained in milliseconds from a 30-user CSV are
#    imported; the first is active; list (table and JSON) shows versions,
#    parents and the active one; activate, rollback through the history, and
#    a rollback with no earlier version refused.
# 2. Refused: a corrupted model file at import, a file changed after import at
#    activate, an unknown model, a database from a newer polytask.
# 3. A/B split 70/30: each user keeps their version, both are served, `off`
#    returns everyone to the active version.
# 4. Keys: created once on stdout as pt_ + 64 hex digits, never listed,
#    revoked; the audit log names the actor ($USER, else "cli").
# 5. Usage errors exit 2 with one line.
set -u
BIN=$1
ROOT=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_models_cli.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
. "$ROOT/tests/cli/lib.sh"

jq_py() { # jq_py FILE EXPR: evaluates a Python expression over the JSON in FILE as d
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# tiny training data and two recommenders (popularity, item2item)
{
    echo "user_id,item_id,timestamp"
    u=0
    while [ $u -lt 30 ]; do
        for k in 0 1 2; do echo "U$u,I$(((u % 3) * 4 + (u + k) % 4)),$((100 * u + k))"; done
        u=$((u + 1))
    done
} >"$T/in.csv"
for kind in popularity item2item bpr; do
    printf 'recommend:\n  interactions:\n    path: in.csv\n    columns: {user: user_id, item: item_id, time: timestamp}\n  model: %s\n  dim: 4\n  epochs: 1\n  eval: {k: 3}\n' \
        "$kind" >"$T/$kind.yaml"
    run recommend train --config "$T/$kind.yaml" --out "$T/$kind.ptr" --no-eval
    expect_ok || { echo "cannot train the test models"; exit 1; }
done
DB=$T/reg.db
M="models --registry $DB"

# 1. import, list, activate, rollback
export USER=tester
run $M import shop "$T/popularity.ptr"
expect_ok && { grep -q "shop: imported version 1 (sha256 [0-9a-f]\{64\}), active" "$T/out" || fail "import 1 output"; }
run $M import shop "$T/item2item.ptr" --parent 1
expect_ok && { grep -q "imported version 2" "$T/out" && ! grep -q active "$T/out" || fail "import 2 output"; }
run $M list
expect_ok && { grep -q "^  \* *1 " "$T/out" && grep -q "item2item.ptr" "$T/out" || fail "list marks version 1 active"; }
run $M list shop --json
if expect_ok; then
    [ "$(jq_py "$T/out" 'd["models"][0]["active"]')" = 1 ] || fail "list --json: active"
    [ "$(jq_py "$T/out" 'd["models"][0]["versions"][1]["parent"]')" = 1 ] || fail "list --json: parent"
    [ "$(jq_py "$T/out" 'd["models"][0]["versions"][1]["created_by"]')" = tester ] || fail "list --json: actor"
    [ "$(jq_py "$T/out" 'd["models"][0]["versions"][0]["kind"]')" = recommender ] || fail "list --json: kind"
fi
run $M activate shop 2
expect_ok && { grep -q "shop: version 2 is active" "$T/out" || fail "activate output"; }
run $M rollback shop
expect_ok && { grep -q "rolled back to version 1" "$T/out" || fail "rollback output"; }
run $M rollback shop
expect_fail "no earlier active version"
run $M resolve shop --json
expect_ok && { [ "$(jq_py "$T/out" 'd["version"]')" = 1 ] || fail "resolve: the active version"; }

# 2. refused files and databases
cp "$T/bpr.ptr" "$T/corrupt.ptr"
printf 'X' | dd of="$T/corrupt.ptr" bs=1 seek=120 conv=notrunc 2>/dev/null
run $M import shop "$T/corrupt.ptr"
expect_fail "corrupt.ptr"
run $M import shop "$T/in.csv"
expect_fail "in.csv"
run $M import shop "$T/missing.ptr"
expect_fail "missing.ptr"
cp "$T/bpr.ptr" "$T/moving.ptr"
run $M import shop "$T/moving.ptr"
expect_ok
cp "$T/popularity.ptr" "$T/moving.ptr"
run $M activate shop 3
expect_fail "model file changed since import"
run $M activate shop 9
expect_fail "no version 9"
run $M list nope
expect_fail "no model 'nope'"
cp "$DB" "$T/newer.db"
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version=99"); c.commit()' "$T/newer.db"
run models --registry "$T/newer.db" list
expect_fail "newer than this polytask supports"

# 3. split
run $M split shop 1=70,2=30
expect_ok
: >"$T/served"
u=0
while [ $u -lt 100 ]; do
    "$BIN" $M resolve shop --user "user$u" >>"$T/served" || fail "resolve user$u"
    u=$((u + 1))
done
n1=$(grep -c '^1 ' "$T/served")
n2=$(grep -c '^2 ' "$T/served")
[ $((n1 + n2)) -eq 100 ] || fail "split served other versions"
[ "$n1" -gt 50 ] && [ "$n2" -gt 15 ] || fail "split 70/30 served $n1/$n2"
run $M resolve shop --user user7
a=$(cat "$T/out")
run $M resolve shop --user user7
[ "$(cat "$T/out")" = "$a" ] || fail "a user must keep their variant"
run $M list shop
expect_ok && { grep -q "split 1=70,2=30" "$T/out" || fail "list shows the split"; }
run $M split shop off
expect_ok
run $M resolve shop --user user7
expect_ok && { grep -q '^1 ' "$T/out" || fail "split off: the active version"; }
run $M split shop 1=0
expect_fail "sum to more than 0"

# 4. keys and audit
run $M keys create learner --scope read
expect_ok && { grep -qx 'pt_[0-9a-f]\{64\}' "$T/out" || fail "key format"; }
KEY=$(cat "$T/out")
run $M keys create learner --scope admin
expect_fail "exists"
run $M keys list --json
expect_ok && {
    [ "$(jq_py "$T/out" 'd[0]["scope"]')" = read ] || fail "keys list: scope"
    ! grep -q "${KEY#pt_}" "$T/out" || fail "keys list shows the key"
}
run $M keys revoke learner
expect_ok
run $M keys revoke nobody
expect_fail "no API key labelled 'nobody'"
run $M keys list
expect_ok && { grep -q "^learner  *read  *[0-9-]* [0-9:]*  *[0-9-]" "$T/out" || fail "keys list: revoked date"; }
unset USER
run $M activate shop 2
expect_ok
run $M audit --json
if expect_ok; then
    [ "$(jq_py "$T/out" 'd[0]["actor"]')" = cli ] || fail "actor without USER"
    [ "$(jq_py "$T/out" 'd[0]["action"]')" = activate ] || fail "newest first"
    [ "$(jq_py "$T/out" 'd[1]["actor"]')" = tester ] || fail "actor from USER"
    [ "$(jq_py "$T/out" '",".join(sorted(set(a["action"] for a in d)))')" = \
        "activate,import,key_create,key_revoke,rollback,split" ] || fail "audit actions"
    ! grep -q "${KEY#pt_}" "$T/out" || fail "the audit log shows the key"
fi
run $M audit --limit 2
expect_ok && { [ "$(wc -l <"$T/out")" -eq 3 ] || fail "audit --limit 2: header and 2 rows"; }

# 5. usage errors
run models --help
expect_ok && { grep -q "usage: polytask models" "$T/out" || fail "--help"; }
run models list
expect_usage
run $M
expect_usage
run $M frobnicate
expect_usage
run $M import shop
expect_usage
run $M list --parent 2
expect_usage
run $M activate shop two
expect_usage
run $M split shop 1=x
expect_usage
run $M keys create k
expect_usage
run $M keys create k --scope root
expect_usage
run $M keys
expect_usage
run $M audit --limit -3
expect_usage
run $M list --bogus
expect_usage

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "ok"
