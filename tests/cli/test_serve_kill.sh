#!/bin/sh
# test_serve_kill.sh: an acknowledged event is never lost. Three rounds: start
# polytask serve, post events from two concurrent clients (each body carries
# a unique marker), kill -9 the server at a random moment, restart it. Then
# every event the server answered 202 for must be in the registry database
# with its content, and the database must pass SQLite's integrity check.
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
printf 'user_id,item_id,timestamp\nu1,a,1\nu1,b,2\nu2,a,3\n' >"$T/i.csv"
printf 'recommend:\n  interactions: {path: i.csv}\n  model: popularity\n' >"$T/rec.yaml"
"$BIN" recommend train --config "$T/rec.yaml" --out "$T/rec.ptr" --no-eval >/dev/null 2>&1 &&
    "$BIN" models --registry "$DB" import shop "$T/rec.ptr" >/dev/null 2>&1 ||
    { echo "FAIL: setting up the registry"; exit 1; }
AK=$("$BIN" models --registry "$DB" keys create boss --scope admin 2>/dev/null)

start() {
    : >"$T/serve.err"
    "$BIN" serve --registry "$DB" --listen 127.0.0.1:0 --threads 2 >/dev/null 2>"$T/serve.err" &
    SRV=$!
    PORT=
    for i in $(seq 1 100); do
        PORT=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/serve.err")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "FAIL: the server did not start"
    exit 1
}

client() { # client NAME ROUND: posts until the server is gone; acked markers to $T/acked.NAME.ROUND
    n=0
    : >"$T/acked.$1.$2"
    while :; do
        n=$((n + 1))
        m="$1-$2-$n"
        code=$(curl -s -o "$T/resp.$1" -w '%{http_code}' -H "Authorization: Bearer $AK" \
            --data-binary "{\"model\":\"shop\",\"rows\":[{\"marker\":\"$m\",\"label\":1}]}" "http://127.0.0.1:$PORT/v1/events" 2>/dev/null)
        [ "$code" = 202 ] && echo "$m" >>"$T/acked.$1.$2"
        [ "$code" = 000 ] && return 0 # connection refused: the server is gone
    done
}

for round in 1 2 3; do
    start
    client a $round &
    A=$!
    client b $round &
    B=$!
    # a random moment between 0.3 and 1.5 s into the load
    sleep "$(awk -v s=$$ -v r=$round 'BEGIN { srand(s + r); printf "%.2f", 0.3 + rand() * 1.2 }')"
    kill -9 "$SRV"
    wait "$SRV" 2>/dev/null
    SRV=
    wait "$A" "$B"
done
start # a restart after the last kill must come up on the same database
kill -TERM "$SRV"
wait "$SRV"
SRV=

cat "$T"/acked.* | sort >"$T/acked"
python3 - "$DB" "$T/acked" <<'PY' || FAILS=$((FAILS + 1))
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ok = db.execute("pragma integrity_check").fetchone()[0]
stored = set()
for (row,) in db.execute("select row from events"):
    stored.add(json.loads(row)["marker"])
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
lost = [m for m in acked if m not in stored]
print(f"acknowledged {len(acked)}, stored {len(stored)}, lost {len(lost)}, integrity {ok}")
if ok != "ok" or lost or not acked:
    print("FAIL: lost", lost[:5])
    sys.exit(1)
PY
if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo ok
