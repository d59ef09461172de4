#!/bin/sh
# test_serve_raw.sh: raw behaviour events on POST /v1/events, learned online.
#
# Usage: sh test_serve_raw.sh POLYTASK_BINARY REPO_ROOT
#
# A generated shop log (views, carts, purchases of 15 users on 200 items over
# two days) is built into samples (negatives, cart and purchase windows) and
# an MMoE is trained on them and served. Raw events of later hours are then
# posted as {"events": [...]}: bad ones are refused with 400 naming the event
# and what is wrong (unknown column, missing user, unknown type, bad time,
# labelled rows for this endpoint's other member); the learner reads the
# training log first, pushes the stored events through the builder, and
# learns each sample once its windows have passed, publishing versions
# (polytask_learner_samples_built_total, _samples_waiting, _events_late_total
# on /metrics). The samples it learned are exactly those `polytask build`
# makes from the training log followed by the posted events: counted over two
# server runs, with a SIGTERM restart between them that rebuilds the state
# from the stored events and learns none of the first run's samples again.
# Then kill -9 at random moments while events are posted and learned: every
# acknowledged event is stored, and in the end the published versions have
# learned each sample of the stored events exactly once (the registry's
# count equals the batch build's).
set -u
BIN=$1
ROOT=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_serve_raw.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
SRV=
cleanup() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
. "$ROOT/tests/cli/lib.sh"
command -v curl >/dev/null || { echo "FAIL: curl is not installed (scripts/deps.sh test)"; exit 1; }

# the log, the later events (two posts, and the event that closes every window), bad bodies
python3 - "$T" <<'PY'
import json, random, sys
d = sys.argv[1]
rnd = random.Random(5)
t0 = 1700000000
def gen(start, end, users):
    ev = []
    t = start
    while t < end:
        u, i = rnd.randrange(users), rnd.randrange(200)
        for k in range(1 + rnd.randrange(2)):
            ev.append((t, "u%d" % u, "i%d" % ((i + k) % 200), "view"))
        if rnd.random() < 0.25: ev.append((t + rnd.randrange(3000), "u%d" % u, "i%d" % i, "cart"))
        if rnd.random() < 0.10: ev.append((t + rnd.randrange(20000), "u%d" % u, "i%d" % i, "purchase"))
        t += 1 + rnd.randrange(300)
    ev.sort(key=lambda e: e[0])
    return ev
log = gen(t0, t0 + 2 * 86400, 15)
with open(d + "/events.csv", "w") as f:
    f.write("user,item,type,ts\n")
    for e in log: f.write("%s,%s,%s,%d\n" % (e[1], e[2], e[3], e[0]))
end = log[-1][0]
more = gen(end + 10, end + 16 * 3600, 18) # 3 users the log never saw
def body(evs):
    return {"model": "shop", "events": [{"user": e[1], "item": e[2], "type": e[3], "ts": e[0]} for e in evs]}
half = len(more) // 2
json.dump(body(more[:half]), open(d + "/post1.json", "w"))
late = dict(body(more[half:half + 1])["events"][0]); late["ts"] = more[half - 20][0] # older than the newest stored
json.dump({"model": "shop", "events": [late]}, open(d + "/late.json", "w"))
json.dump(body(more[half:]), open(d + "/post2.json", "w"))
close = (more[-1][0] + 86400, "u1", "i1", "view")
json.dump(body([close]), open(d + "/close.json", "w"))
# the log the server has seen in the end, in the order it was stored, for the batch build
# (the late event as the server takes it: at the newest time before it)
allv = log + more[:half] + [(more[half - 1][0], late["user"], late["item"], late["type"])] + more[half:] + [close]
with open(d + "/all.csv", "w") as f:
    f.write("user,item,type,ts\n")
    for e in allv: f.write("%s,%s,%s,%d\n" % (e[1], e[2], e[3], e[0]))
open(d + "/first_ts", "w").write(str(more[0][0]))
# phase 3: chunks posted while the server is killed
third = gen(close[0] + 10, close[0] + 10 + 20 * 3600, 18)
k = 0
for c in range(0, len(third), 30):
    k += 1
    json.dump(body(third[c:c + 30]), open(d + "/chunk%d.json" % k, "w"))
open(d + "/nchunks", "w").write(str(k))
json.dump(body([(third[-1][0] + 86400, "u2", "i2", "view")]), open(d + "/close3.json", "w"))
open(d + "/close_ts", "w").write(str(close[0]))
ok = body(more[:1])["events"][0]
def bad(**kw):
    e = dict(ok); e.update(kw); return {"model": "shop", "events": [ok, {k: v for k, v in e.items() if v is not None}]}
json.dump(bad(colour="red"), open(d + "/b_unknown.json", "w"))
json.dump(bad(user=None), open(d + "/b_nouser.json", "w"))
json.dump(bad(type="click"), open(d + "/b_type.json", "w"))
json.dump(bad(ts="noon"), open(d + "/b_time.json", "w"))
json.dump({"model": "shop", "events": [ok], "rows": [ok]}, open(d + "/b_both.json", "w"))
json.dump({"model": "shop", "rows": [ok]}, open(d + "/b_asrows.json", "w"))
PY
[ -s "$T/post1.json" ] || { echo "FAIL: generating the events"; exit 1; }

cat >"$T/shop.yaml" <<EOF
samples:
  events: events.csv
  columns: {user: user, item: item, type: type, time: ts}
  time_format: unix
  event_types: [view, cart, purchase]
  exposure: view
  purchase: purchase
  labels:
    - {name: cart, event: cart, window: 1h}
    - {name: bought, event: purchase, window: 6h}
  negatives: {per_exposure: 1, sampler: popularity, label: click, seed: 2}
  features: {windows: [1h, all], sequence: 3}
features:
  categorical: [{name: user, dim: 3}, {name: item, dim: 3}, {name: hour, dim: 2}]
  multi: [{name: seq_items, dim: 3}]
  numeric: [{name: since_last, impute: mean}, {name: u_view_1h}, {name: u_cart_all}, {name: i_view}, {name: i_bought_rate}]
tasks:
  - {name: click, label: click}
  - {name: cart, label: cart}
  - {name: bought, label: bought}
model: {kind: mmoe, experts: 2, expert_dims: [8], tower_dims: [4]}
train: {epochs: 1, batch: 64}
EOF
run train --config "$T/shop.yaml" --out "$T/m.ptm"
expect_ok || exit 1
DB=$T/reg.db
run models --registry "$DB" import shop "$T/m.ptm"
expect_ok || exit 1
"$BIN" models --registry "$DB" keys create boss --scope admin >"$T/admin.key" 2>/dev/null
AK=$(cat "$T/admin.key")

start() {
    : >"$T/serve.err"
    # from another folder: the model's config names its log relative to itself
    (cd / && exec "$BIN" serve --registry "$DB" --listen 127.0.0.1:0 --threads 2 --learn-batch 100 \
        --publish-events 300 --publish-seconds 1 --model-dir "$T/online" >/dev/null 2>"$T/serve.err") &
    SRV=$!
    PORT=
    for i in $(seq 1 100); do
        PORT=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/serve.err")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    [ -n "$PORT" ] || { echo "FAIL: the server did not start"; cat "$T/serve.err"; exit 1; }
    URL=http://127.0.0.1:$PORT
}
stop() {
    kill -TERM "$SRV"
    wait "$SRV" || { echo "FAIL: serve exited non-zero after SIGTERM"; FAILS=$((FAILS + 1)); }
    SRV=
}
req() { # req METHOD PATH [BODYFILE]: status in $T/code, body in $T/body
    curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $AK" ${3:+--data-binary @"$3"} "$URL$2" >"$T/code"
}
want() { # want CODE [NEEDLE]
    [ "$(cat "$T/code")" = "$1" ] || { echo "FAIL: want HTTP $1, got $(cat "$T/code"): $(head -c 300 "$T/body")"; FAILS=$((FAILS + 1)); return 1; }
    [ -z "${2:-}" ] || grep -qF -- "$2" "$T/body" || { echo "FAIL: body lacks '$2': $(head -c 300 "$T/body")"; FAILS=$((FAILS + 1)); return 1; }
}
metric() { # metric NAME: its value for model shop, or empty
    curl -s "$URL/metrics" | sed -n "s/^$1{model=\"shop\"} \([0-9]*\)$/\1/p"
}
settle() { # waits until the learner has pushed every stored raw event and published
    for i in $(seq 1 150); do
        lag=$(metric polytask_learner_lag_events)
        [ "$lag" = 0 ] && [ -n "$(metric polytask_learner_samples_waiting)" ] && sleep 1.5 && return 0
        sleep 0.2
    done
    echo "FAIL: the learner did not catch up (lag '$lag')"
    FAILS=$((FAILS + 1))
}

start
req POST /v1/events "$T/b_unknown.json"; want 400 "event 1: unknown column 'colour'"
req POST /v1/events "$T/b_nouser.json"; want 400 "event 1: no 'user'"
req POST /v1/events "$T/b_type.json"; want 400 "unknown event type 'click'"
req POST /v1/events "$T/b_time.json"; want 400 "bad timestamp 'noon'"
req POST /v1/events "$T/b_both.json"; want 400 "not both"
req POST /v1/events "$T/b_asrows.json"; want 400 "unknown column 'type'"
N1=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['events']))" "$T/post1.json")
req POST /v1/events "$T/post1.json"; want 202 "\"accepted\":$N1"
req POST /v1/events "$T/late.json"; want 202 '"accepted":1'
settle
B1=$(metric polytask_learner_samples_built_total)
W1=$(metric polytask_learner_samples_waiting)
[ -n "$B1" ] && [ "$B1" -gt 0 ] || { echo "FAIL: samples built from the first post: '$B1'"; FAILS=$((FAILS + 1)); B1=0; }
[ -n "$W1" ] && [ "$W1" -gt 0 ] || { echo "FAIL: samples waiting for their windows: '$W1'"; FAILS=$((FAILS + 1)); }
[ "$(metric polytask_learner_events_late_total)" = 1 ] || { echo "FAIL: one late event"; FAILS=$((FAILS + 1)); }
P1=$(metric polytask_learner_versions_published_total)
[ -n "$P1" ] && [ "$P1" -ge 1 ] || { echo "FAIL: a version published from raw events: '$P1'"; FAILS=$((FAILS + 1)); }
grep -q "read [0-9]* events of .*events.csv first" "$T/serve.err" || { echo "FAIL: the training log was read first"; sed 's/^/    | /' "$T/serve.err"; FAILS=$((FAILS + 1)); }
stop

# restarted: the state is rebuilt from the log and the stored events; nothing is learned twice
start
req POST /v1/events "$T/post2.json"; want 202 '"accepted"'
req POST /v1/events "$T/close.json"; want 202 '"accepted":1'
settle
B2=$(metric polytask_learner_samples_built_total)
[ -n "$B2" ] || B2=0
stop
"$BIN" models --registry "$DB" list shop >"$T/list" 2>&1
grep -q "online-learner" "$T/list" || { echo "FAIL: versions by the online learner in the registry"; FAILS=$((FAILS + 1)); }

# the batch build of the same events: its rows from the first posted second on
sed 's|events: events.csv|events: all.csv|' "$T/shop.yaml" >"$T/all.yaml"
run build --config "$T/all.yaml" --out "$T/all.samples"
expect_ok || exit 1
WANT=$(python3 - "$T/all.samples/train.csv" "$(cat "$T/first_ts")" "$(cat "$T/close_ts")" <<'PY'
import csv, sys
n = 0
for r in csv.DictReader(open(sys.argv[1])):
    if int(sys.argv[2]) <= int(r["ts"]) < int(sys.argv[3]): n += 1
print(n)
PY
)
[ $((B1 + B2)) -eq "$WANT" ] || { echo "FAIL: samples learned online $B1 + $B2, batch build of the same events $WANT"; FAILS=$((FAILS + 1)); }
echo "raw events: $B1 + $B2 samples learned online (batch build: $WANT), $P1 versions in the first run"

# kill -9 while raw events are posted and learned
NCH=$(cat "$T/nchunks")
NEXT=1
: >"$T/acked"
client() { # posts chunk NEXT.. until the server is gone; acked chunk numbers to $T/acked
    k=$NEXT
    while [ "$k" -le "$NCH" ]; do
        code=$(curl -s -o "$T/resp" -w '%{http_code}' -H "Authorization: Bearer $AK" \
            --data-binary @"$T/chunk$k.json" "$URL/v1/events" 2>/dev/null)
        [ "$code" = 202 ] && echo "$k" >>"$T/acked"
        echo $((k + 1)) >"$T/next"
        [ "$code" = 000 ] && return 0
        [ "$code" = 202 ] || { echo "FAIL: chunk $k: $code: $(cat "$T/resp")"; return 1; }
        k=$((k + 1))
    done
}
for round in 1 2; do
    start
    client &
    C=$!
    sleep "$(awk -v s=$$ -v r=$round 'BEGIN { srand(s + r); printf "%.2f", 0.3 + rand() * 1.5 }')"
    kill -9 "$SRV"
    wait "$SRV" 2>/dev/null
    SRV=
    wait "$C" || FAILS=$((FAILS + 1))
    NEXT=$(cat "$T/next" 2>/dev/null || echo 1)
done
start
k=$NEXT
while [ "$k" -le "$NCH" ]; do
    req POST /v1/events "$T/chunk$k.json"; want 202 && echo "$k" >>"$T/acked"
    k=$((k + 1))
done
req POST /v1/events "$T/close3.json"; want 202 '"accepted":1'
settle
stop
python3 - "$DB" "$T" <<'PY' || FAILS=$((FAILS + 1))
import csv, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1]); d = sys.argv[2]
ok = db.execute("pragma integrity_check").fetchone()[0]
stored = [json.loads(r) for (r,) in db.execute("select row from raw_events order by id")]
keys = {}
for e in stored:
    t = (e["user"], e["item"], e["type"], e["ts"]); keys[t] = keys.get(t, 0) + 1
lost = 0
for k in sorted(set(int(l) for l in open(d + "/acked") if l.strip())):
    for e in json.load(open(d + "/chunk%d.json" % k))["events"]:
        t = (e["user"], e["item"], e["type"], e["ts"])
        if not keys.get(t): lost += 1
# what the server's builder saw: the log, then the stored events in order, a late one at the newest time
log = list(csv.reader(open(d + "/events.csv")))[1:]
prev = max(int(r[3]) for r in log)
with open(d + "/all3.csv", "w") as f:
    f.write("user,item,type,ts\n")
    for r in log: f.write(",".join(r) + "\n")
    for e in stored:
        prev = max(prev, int(e["ts"]))
        f.write("%s,%s,%s,%d\n" % (e["user"], e["item"], e["type"], prev))
learned = db.execute("select samples from raw_offsets").fetchone()[0]
print(f"kill -9: acked chunks {len(open(d + '/acked').read().split())}, stored raw events {len(stored)}, lost {lost}, "
      f"integrity {ok}, samples learned by published versions {learned}")
open(d + "/learned", "w").write(str(learned))
sys.exit(1 if ok != "ok" or lost else 0)
PY
sed 's|events: events.csv|events: all3.csv|' "$T/shop.yaml" >"$T/all3.yaml"
run build --config "$T/all3.yaml" --out "$T/all3.samples"
expect_ok || exit 1
WANT3=$(python3 - "$T/all3.samples/train.csv" "$(cat "$T/first_ts")" <<'PY'
import csv, sys
print(sum(1 for r in csv.DictReader(open(sys.argv[1])) if int(r["ts"]) >= int(sys.argv[2])))
PY
)
[ "$(cat "$T/learned")" = "$WANT3" ] || { echo "FAIL: published versions learned $(cat "$T/learned") samples, the batch build of the stored events makes $WANT3"; FAILS=$((FAILS + 1)); }

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)"; exit 1; }
echo "ok"
