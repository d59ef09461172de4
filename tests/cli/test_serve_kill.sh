#!/bin/sh
# test_serve_kill.sh: kill -9 at any moment, during event ingestion and online
# learning, loses no accepted event, leaves no torn model file, and a restart
# resumes learning where it stopped.
#
# A small census MMoE is served with the online learner publishing often
# (every 40 events, micro-batches of 20), so kills land in ingestion,
# learning, model-file writes and publishes alike. Four rounds: start
# polytask serve, post labelled census rows from two concurrent clients (each
# row carries a unique marker in instance_weight, a column the model does not
# read), kill -9 the server at a random moment, restart. Then:
#   - every event the server answered 202 for is in the registry database
#     with its content, and the database passes SQLite's integrity check;
#   - every registered version's file exists, hashes to its recorded SHA-256
#     and loads (polytask inspect); the learner's offset never goes back;
#   - a last restart learns exactly the events after the stored offset (its
#     consumed counter equals their number), catches up to no lag, and on
#     SIGTERM publishes what it learned (the offset reaches the last event).
#
# Usage: sh test_serve_kill.sh POLYTASK_BINARY REPO_ROOT
set -u
BIN=$1
ROOT=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/pt_serve_kill.XXXXXX") || { echo "FAIL: mktemp -d"; exit 1; }
SRV=
trap '[ -n "$SRV" ] && kill -9 "$SRV" 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
FAILS=0
DB=$T/reg.db
sed 's/epochs: [0-9]*/epochs: 1/; s/kind: mlp/kind: mmoe\n  experts: 2\n  expert_dims: [32]\n  tower_dims: [16]/' \
    "$ROOT/data/census/census.yaml" >"$T/census.yaml"
sed -i "s|census-income-6k.csv.gz|$ROOT/data/census/census-income-6k.csv.gz|" "$T/census.yaml"
"$BIN" train --config "$T/census.yaml" --out "$T/m1.ptm" >/dev/null 2>&1 &&
    "$BIN" models --registry "$DB" import census "$T/m1.ptm" >/dev/null 2>&1 ||
    { echo "FAIL: setting up the registry"; exit 1; }
AK=$("$BIN" models --registry "$DB" keys create boss --scope admin 2>/dev/null)
# one labelled census row as a body, split where the marker goes
python3 - "$T/census.yaml" "$ROOT/data/census/census-income-6k.csv.gz" "$T" <<'PY' || { echo "FAIL: rows"; exit 1; }
import csv, gzip, json, re, sys
cfg = open(sys.argv[1]).read()
cols = [c.strip() for c in re.search(r"columns:\s*\[(.*?)\]", cfg, re.S).group(1).replace("\n", " ").split(",")]
for i, rec in enumerate(csv.reader(gzip.open(sys.argv[2], "rt"), skipinitialspace=True)):
    if i == 7: break
row = dict(zip(cols, rec))
row["instance_weight"] = "@MARK@"
pre, post = json.dumps({"model": "census", "rows": [row]}).split("@MARK@")
open(sys.argv[3] + "/pre", "w").write(pre)
open(sys.argv[3] + "/post", "w").write(post)
PY
PRE=$(cat "$T/pre") POST=$(cat "$T/post")

start() {
    : >"$T/serve.err"
    "$BIN" serve --registry "$DB" --listen 127.0.0.1:0 --threads 2 --publish-events 40 --learn-batch 20 \
        --model-dir "$T/online" >/dev/null 2>"$T/serve.err" &
    SRV=$!
    PORT=
    for i in $(seq 1 200); do
        PORT=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/serve.err")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "FAIL: the server did not start"
    cat "$T/serve.err"
    exit 1
}

offset() { python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute('select offset from offsets').fetchone(); print(r[0] if r else 0)" "$DB"; }

client() { # client NAME ROUND: posts until the server is gone; acked markers to $T/acked.NAME.ROUND
    n=0
    : >"$T/acked.$1.$2"
    while :; do
        n=$((n + 1))
        m="$1-$2-$n"
        code=$(curl -s -o "$T/resp.$1" -w '%{http_code}' -H "Authorization: Bearer $AK" \
            --data-binary "$PRE$m$POST" "http://127.0.0.1:$PORT/v1/events" 2>/dev/null)
        [ "$code" = 202 ] && echo "$m" >>"$T/acked.$1.$2"
        [ "$code" = 000 ] && return 0 # connection refused: the server is gone
        if [ "$code" != 202 ]; then echo "FAIL: $code: $(cat "$T/resp.$1")"; return 1; fi
    done
}

LAST=0
for round in 1 2 3 4; do
    start
    client a $round &
    A=$!
    client b $round &
    B=$!
    # a random moment between 0.5 and 2.5 s into the load
    sleep "$(awk -v s=$$ -v r=$round 'BEGIN { srand(s + r); printf "%.2f", 0.5 + rand() * 2 }')"
    kill -9 "$SRV"
    wait "$SRV" 2>/dev/null
    SRV=
    wait "$A" || FAILS=$((FAILS + 1))
    wait "$B" || FAILS=$((FAILS + 1))
    O=$(offset)
    [ "$O" -ge "$LAST" ] || { echo "FAIL: round $round: the offset went back from $LAST to $O"; FAILS=$((FAILS + 1)); }
    LAST=$O
done

# a last start resumes from the stored offset and catches up
O=$(offset)
start
for i in $(seq 1 200); do
    curl -s "http://127.0.0.1:$PORT/metrics" >"$T/metrics"
    grep -q '^polytask_learner_lag_events{model="census"} 0$' "$T/metrics" && break
    sleep 0.1
done
CONSUMED=$(sed -n 's/^polytask_learner_events_consumed_total{model="census"} //p' "$T/metrics")
kill -TERM "$SRV"
wait "$SRV"
SRV=

cat "$T"/acked.* | sort >"$T/acked"
python3 - "$DB" "$T/acked" "$O" "${CONSUMED:-none}" <<'PY' || FAILS=$((FAILS + 1))
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ok = db.execute("pragma integrity_check").fetchone()[0]
stored = set()
for (row,) in db.execute("select row from events"):
    stored.add(json.loads(row)["instance_weight"])
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
lost = [m for m in acked if m not in stored]
versions = db.execute("select version, path, sha256 from versions order by version").fetchall()
torn = [v for v, p, h in versions if hashlib.sha256(open(p, "rb").read()).hexdigest() != h]
o_before = int(sys.argv[3])
n_after = db.execute("select count(*) from events where id > ?", (o_before,)).fetchone()[0]
o_end = db.execute("select offset from offsets").fetchone()[0]
max_id = db.execute("select max(id) from events").fetchone()[0]
print(f"acknowledged {len(acked)}, stored {len(stored)}, lost {len(lost)}, integrity {ok}; "
      f"versions {len(versions)}, torn {len(torn)}; offset before the last start {o_before}, "
      f"events after it {n_after}, consumed by the last run {sys.argv[4]}, offset at the end {o_end} of {max_id}")
bad = ok != "ok" or lost or not acked or torn or len(versions) < 2
bad = bad or sys.argv[4] != str(n_after) or o_end != max_id
if bad:
    print("FAIL: lost", lost[:5], "torn", torn)
    sys.exit(1)
PY
# every version's file loads
python3 -c "
import sqlite3, sys
for (p,) in sqlite3.connect(sys.argv[1]).execute('select path from versions'): print(p)" "$DB" >"$T/paths"
while read -r p; do
    "$BIN" inspect "$p" >/dev/null 2>"$T/inspect.err" || { echo "FAIL: $p does not load: $(cat "$T/inspect.err")"; FAILS=$((FAILS + 1)); }
done <"$T/paths"
if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo ok
