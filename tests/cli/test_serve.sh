#!/bin/sh
# test_serve.sh: polytask serve driven over real HTTP on a loopback port (curl).
#
# Usage: sh test_serve.sh POLYTASK_BINARY REPO_ROOT
#
# A census model (data/census/census.yaml, 1 epoch) is imported twice into a
# registry (versions 1 and 2), with a read key and an admin key, and a
# recommender beside it. Checked: every endpoint (predict, recommend, events,
# models, activate, rollback, healthz, readyz, metrics); each auth failure
# (no key 401, bad key 401, read key on an admin endpoint 403); malformed
# JSON, a wrong type, an unknown column, too many rows, too deep JSON (400) and
# an oversized body (413); a client that stalls is disconnected after the
# idle timeout while others are served; accepted events are in the registry,
# events the model cannot read (wrong type, unknown column) or for a
# recommender are refused, keys are created, listed and revoked and splits
# set over HTTP, and the online learner scores an accepted event
# (running AUC on GET /v1/models/NAME) and consumes it; /metrics carries the
# drift per feature;
# predictions keep succeeding while versions are activated and rolled back
# under load (hot swap: zero failures); an A/B split sends each user to their
# variant, which stays loaded and is counted per version, and both variants
# score posted events for their running AUC; an activation made
# by another process (the CLI) is served within seconds; a revoked key is
# refused within a second; SIGTERM stops the server with exit 0.
set -u
BIN=$1
ROOT=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_serve.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
SRV=
cleanup() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
. "$ROOT/tests/cli/lib.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed (scripts/deps.sh test)"; exit 1; }

sed 's/epochs: [0-9]*/epochs: 1/' "$ROOT/data/census/census.yaml" >"$T/census.yaml"
sed -i "s|census-income-6k.csv.gz|$ROOT/data/census/census-income-6k.csv.gz|" "$T/census.yaml"
run train --config "$T/census.yaml" --out "$T/m1.ptm"
expect_ok || exit 1
cp "$T/m1.ptm" "$T/m2.ptm"
DB=$T/reg.db
run models --registry "$DB" import census "$T/m1.ptm"
expect_ok
run models --registry "$DB" import census "$T/m2.ptm" --parent 1
expect_ok
run models --registry "$DB" activate census 2
expect_ok
"$BIN" models --registry "$DB" keys create reader --scope read >"$T/read.key" 2>/dev/null
"$BIN" models --registry "$DB" keys create boss --scope admin >"$T/admin.key" 2>/dev/null
RK=$(cat "$T/read.key") AK=$(cat "$T/admin.key")
[ -n "$RK" ] && [ -n "$AK" ] || fail "keys not created"
# a recommender too
printf 'user_id,item_id,timestamp\nu1,a,1\nu1,b,2\nu2,a,3\nu2,c,4\nu3,b,5\nu3,c,6\n' >"$T/i.csv"
printf 'recommend:\n  interactions: {path: i.csv}\n  model: item2item\n' >"$T/rec.yaml"
run recommend train --config "$T/rec.yaml" --out "$T/rec.ptr" --no-eval
expect_ok
run models --registry "$DB" import shop "$T/rec.ptr"
expect_ok

# request bodies from the census rows, with the config's column names
python3 - "$T/census.yaml" "$ROOT/data/census/census-income-6k.csv.gz" "$T" <<'PY'
import csv, gzip, json, re, sys
cfg = open(sys.argv[1]).read()
cols = [c.strip() for c in re.search(r"columns:\s*\[(.*?)\]", cfg, re.S).group(1).replace("\n", " ").split(",")]
rows = []
for i, rec in enumerate(csv.reader(gzip.open(sys.argv[2], "rt"), skipinitialspace=True)):
    if i >= 100: break
    rows.append(dict(zip(cols, rec)))
d = sys.argv[3]
json.dump({"model": "census", "rows": rows[:1]}, open(d + "/one.json", "w"))
json.dump({"model": "census", "rows": rows}, open(d + "/hundred.json", "w"))
bad = dict(rows[0]); bad["age"] = {"x": 1}
json.dump({"model": "census", "rows": [bad]}, open(d + "/wrongtype.json", "w"))
badlab = dict(rows[0]); badlab["income_label"] = [1]
json.dump({"model": "census", "rows": [badlab]}, open(d + "/badlabel.json", "w"))
json.dump({"model": "shop", "rows": rows[:1]}, open(d + "/shopevent.json", "w"))
unk = dict(rows[0]); unk["colour"] = "red"
json.dump({"model": "census", "rows": [unk]}, open(d + "/unknown.json", "w"))
json.dump({"model": "census", "rows": rows[:1] * 60}, open(d + "/many.json", "w"))
json.dump({"model": "census", "rows": rows[10:50]}, open(d + "/forty.json", "w"))
open(d + "/deep.json", "w").write('{"model": "census", "rows": ' + "[" * 40 + "]" * 40 + "}")
open(d + "/big.json", "w").write(json.dumps({"model": "census", "rows": rows * 40}))
PY

"$BIN" serve --registry "$DB" --listen 127.0.0.1:0 --threads 2 --max-rows 50 --max-body 200000 --timeout 2 >"$T/serve.out" 2>"$T/serve.err" &
SRV=$!
PORT=
for i in $(seq 1 100); do
    PORT=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/serve.err")
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "FAIL: the server did not start"; cat "$T/serve.err"; exit 1; }
URL=http://127.0.0.1:$PORT

# req METHOD PATH KEY [BODYFILE]: status in $T/code, body in $T/body
req() {
    if [ -n "${4:-}" ]; then
        curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H "Authorization: Bearer $3"} --data-binary @"$4" "$URL$2" >"$T/code"
    else
        curl -s -o "$T/body" -w '%{http_code}' -X "$1" ${3:+-H "Authorization: Bearer $3"} "$URL$2" >"$T/code"
    fi
}
want() { # want CODE [NEEDLE]
    [ "$(cat "$T/code")" = "$1" ] || { echo "FAIL: want HTTP $1, got $(cat "$T/code"): $(head -c 300 "$T/body")"; FAILS=$((FAILS + 1)); return 1; }
    [ -z "${2:-}" ] || grep -qF -- "$2" "$T/body" || { echo "FAIL: body lacks '$2': $(head -c 300 "$T/body")"; FAILS=$((FAILS + 1)); return 1; }
}

req GET /healthz ""; want 200 '"ok"'
req GET /readyz ""; want 200 '"ready"'
req POST /v1/predict "$RK" "$T/one.json"; want 200 '"predictions":[{"income":'
grep -q '"version":2' "$T/body" || fail "serves the active version 2"
req POST /v1/predict "$RK" "$T/hundred.json"; want 400 "100 rows, at most 50"
req POST /v1/predict "$RK" "$T/many.json"; want 400 "at most 50"
req POST /v1/predict "" "$T/one.json"; want 401 "API key is required"
req POST /v1/predict "pt_0000" "$T/one.json"; want 401 "not valid"
req POST /v1/events "$RK" "$T/one.json"; want 403 "admin scope"
req POST /v1/models/census/rollback "$RK"; want 403
printf '{"model": "census", "rows": [' >"$T/broken.json"
req POST /v1/predict "$RK" "$T/broken.json"; want 400 "not valid JSON"
req POST /v1/predict "$RK" "$T/wrongtype.json"; want 400 "age"
req POST /v1/predict "$RK" "$T/unknown.json"; want 400 "unknown column 'colour'"
req POST /v1/predict "$RK" "$T/deep.json"; want 400 "nested 41 deep"
req POST /v1/predict "$RK" "$T/big.json"; want 413 "larger than 200000 bytes"
req GET /v1/predict "$RK"; want 405
req GET /v1/nothing "$RK"; want 404
printf '{"model": "nope", "rows": []}' >"$T/nope.json"
req POST /v1/predict "$RK" "$T/nope.json"; want 404 "no model 'nope'"
printf '{"model": "shop", "user": "u1", "k": 2}' >"$T/rec.json"
req POST /v1/recommend "$RK" "$T/rec.json"; want 200 '"items":[{"item":"c"'
req POST /v1/events "$AK" "$T/one.json"; want 202 '"accepted":1'
req POST /v1/events "$AK" "$T/badlabel.json"; want 400 "column 'income_label': an array"
req POST /v1/events "$AK" "$T/unknown.json"; want 400 "unknown column 'colour'"
req POST /v1/events "$AK" "$T/shopevent.json"; want 400 "recommender"
# the learner scores the event with the served version, then learns it
for i in $(seq 1 50); do
    req GET /v1/models/census "$RK"
    grep -q '"running_auc"' "$T/body" && break
    sleep 0.1
done
want 200 '"running_auc":{"income":null,"never_married":null},"events":1'
req GET /v1/models "$RK"; want 200 '"name":"census"'
req GET /v1/models/census "$RK"; want 200 '"loaded":[{"version":2,"current":true'
req GET /v1/models/nope "$RK"; want 404
sed 's/"model": "census", //' "$T/one.json" >"$T/nomodel.json"
req POST /v1/predict "$RK" "$T/nomodel.json"; want 400 "'model' is required when more than one model is active"

# a slow client: headers and part of a body, then silence; the server drops
# it after --timeout 2 and answers others meanwhile
python3 - "$PORT" >"$T/slow.out" 2>&1 <<'SLOW' &
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"rows\": [")
c.settimeout(10)
t0 = time.time()
try:
    data = c.recv(4096)
except OSError as e:
    data = b"error " + str(e).encode()
print("closed" if data == b"" else "got %r" % data[:80], round(time.time() - t0, 1))
SLOW
SLOWPID=$!
sleep 0.5
req POST /v1/predict "$RK" "$T/one.json"; want 200 '"predictions"'
wait "$SLOWPID"
grep -q '^closed [1-5]' "$T/slow.out" || fail "slow client: want the connection closed after about 2 s, got: $(cat "$T/slow.out")"

# hot swap under load: predictions keep coming while versions change
: >"$T/codes"
( for i in $(seq 1 150); do curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $RK" --data-binary @"$T/one.json" "$URL/v1/predict"; done >"$T/codes" ) &
LOAD=$!
for v in 1 2 1 2; do
    printf '{"version": %d}' $v >"$T/act.json"
    req POST /v1/models/census/activate "$AK" "$T/act.json"; want 200 "\"version\":$v"
done
req POST /v1/models/census/rollback "$AK"; want 200 '"version":1'
wait "$LOAD"
[ "$(grep -c '^200$' "$T/codes")" = 150 ] || fail "hot swap: $(grep -vc '^200$' "$T/codes") of 150 predictions failed"
req POST /v1/predict "$RK" "$T/one.json"; want 200 '"version":1'

req GET /metrics ""; want 200 'polytask_requests_total{endpoint="predict",status="2xx"}'
grep -q '^polytask_events_accepted_total 1$' "$T/body" || fail "metrics: one event accepted"
# (at least once: after each activation above it learns it again into the version then active)
grep -q '^polytask_learner_events_consumed_total{model="census"} [1-9]' "$T/body" || fail "metrics: the learner consumed the event"
grep -q '^polytask_learner_samples_built_total{model="census"}' "$T/body" && fail "metrics: raw-event families for a model without raw events"
grep -q '^polytask_feature_psi{model="census",version="1",feature="age"} [0-9]' "$T/body" || fail "metrics: drift of the version in use"
grep -q 'polytask_request_seconds_bucket{endpoint="predict",le="+Inf"}' "$T/body" || fail "metrics: latency histogram"
grep -q 'polytask_model_loaded{model="census",version="1",current="1"} 1' "$T/body" || fail "metrics: version in use"

# A/B: split 1:1 by the CLI (another process); each user gets the variant
# `models resolve --user` names, the variant that is not active stays loaded
# (it is not read from disk for each of its requests), and both are counted
run models --registry "$DB" split census 1=1,2=1
expect_ok
U1= U2=
for u in a b c d e f g h i j k l m n o p; do
    v=$("$BIN" models --registry "$DB" resolve census --user "$u" 2>/dev/null | cut -d' ' -f1)
    [ "$v" = 1 ] && [ -z "$U1" ] && U1=$u
    [ "$v" = 2 ] && [ -z "$U2" ] && U2=$u
done
[ -n "$U1" ] && [ -n "$U2" ] || fail "split: no user for each variant among a..p"
for u in "$U1" "$U2" "$U2" "$U2"; do
    sed "s/\"model\": \"census\"/\"model\": \"census\", \"user\": \"$u\"/" "$T/one.json" >"$T/user.json"
    req POST /v1/predict "$RK" "$T/user.json"
    [ "$u" = "$U1" ] && want 200 '"version":1'
    [ "$u" = "$U2" ] && want 200 '"version":2'
done
req GET /metrics ""; want 200
grep -q 'polytask_model_loaded{model="census",version="2",current="0"} 1' "$T/body" || fail "A/B: variant 2 not kept loaded"
grep -q 'polytask_model_requests_total{model="census",version="2"} [1-9]' "$T/body" || fail "A/B: variant 2 not counted"
req GET /v1/models/census "$RK"; want 200 '"loaded":[{"version":1,"current":true'
grep -q '"version":2,"current":false,"requests":[1-9]' "$T/body" || fail "A/B: GET /v1/models/census lacks variant 2's count"
# events are scored by both variants before the learner learns them: each
# version's running AUC covers the 40 new events
req POST /v1/events "$AK" "$T/forty.json"; want 202 '"accepted":40'
ok=
for i in $(seq 1 50); do
    req GET /v1/models/census "$RK"
    python3 - "$T/body" <<'PY' && { ok=1; break; }
import json, sys
vs = {v["version"]: v for v in json.load(open(sys.argv[1]))["versions"]}
sys.exit(0 if all(vs[k].get("events", 0) >= 40 and "income" in vs[k].get("running_auc", {}) for k in (1, 2)) else 1)
PY
    sleep 0.1
done
[ -n "$ok" ] || fail "A/B: both variants' running AUC over the posted events: $(head -c 600 "$T/body")"
req GET /metrics ""; want 200 'polytask_running_auc{model="census",version="2",task="income"}'
run models --registry "$DB" split census off
expect_ok

# an activation by another process shows within a few seconds
run models --registry "$DB" activate census 2
expect_ok
ok=
for i in $(seq 1 40); do
    req POST /v1/predict "$RK" "$T/one.json"
    grep -q '"version":2' "$T/body" && { ok=1; break; }
    sleep 0.1
done
[ -n "$ok" ] || fail "the CLI's activation of version 2 was not served within 4 s"

# the event is in the registry
run models --registry "$DB" audit --json
expect_ok && { grep -q '"rollback"' "$T/out" || fail "the audit log has the rollback"; }

# keys and splits over HTTP (admin): a key created by POST /v1/keys works at
# once, is listed without its secret, is refused on admin endpoints, and is
# refused at once after DELETE; a split posted to /v1/models/NAME/split sends
# a user to their variant, and [] clears it
printf '{"label": "web", "scope": "read"}' >"$T/newkey.json"
req POST /v1/keys "$AK" "$T/newkey.json"; want 201 '"scope":"read","key":"pt_'
WK=$(sed 's/.*"key":"\([^"]*\)".*/\1/' "$T/body")
req POST /v1/predict "$WK" "$T/one.json"; want 200 '"predictions"'
req GET /v1/keys "$WK"; want 403 "admin scope"
req GET /v1/keys "$AK"; want 200 '"label":"web"'
grep -q "$WK" "$T/body" && fail "GET /v1/keys shows a key"
printf '{"label": "x", "scope": "root"}' >"$T/badkey.json"
req POST /v1/keys "$AK" "$T/badkey.json"; want 400 "'scope'"
req DELETE /v1/keys/web "$AK"; want 200 '"revoked":true'
req POST /v1/predict "$WK" "$T/one.json"; want 401 "not valid"
req DELETE /v1/keys/nobody "$AK"; want 404
printf '{"split": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]}' >"$T/split.json"
req POST /v1/models/census/split "$AK" "$T/split.json"; want 200 '"split":[{"version":1'
sed "s/\"model\": \"census\"/\"model\": \"census\", \"user\": \"$U1\"/" "$T/one.json" >"$T/user.json"
req POST /v1/predict "$RK" "$T/user.json"; want 200 '"version":1' # version 2 is the active one
printf '{"split": [{"version": 9, "weight": 1}]}' >"$T/split9.json"
req POST /v1/models/census/split "$AK" "$T/split9.json"; want 404 "no version 9"
printf '{"split": []}' >"$T/split0.json"
req POST /v1/models/census/split "$AK" "$T/split0.json"; want 200 '"split":[]'

# a revoked key stops working within the server's one-second key cache
run models --registry "$DB" keys revoke reader
expect_ok
sleep 1.2
req POST /v1/predict "$RK" "$T/one.json"; want 401 "not valid"

kill -TERM "$SRV"
wait "$SRV"
RC=$?
SRV=
[ "$RC" = 0 ] || fail "SIGTERM: exit $RC, want 0"
grep -q "stopped" "$T/serve.err" || fail "no 'stopped' line"

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo ok
