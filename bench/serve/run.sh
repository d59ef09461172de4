#!/bin/sh
# Serving benchmark: polytask serve against the PyTorch + Flask + gunicorn peer
# (shared/bench/peers/torch_serve.py, 2 workers, 1 torch thread each), both
# serving the census MMoE, loaded by wrk on loopback with shared/bench/post.lua
# at 8 connections for DURATION seconds (default 30), one after the other in
# one run: 100-row requests to both, then 1-row requests to polytask, then
# 100-row requests to polytask again while bench/serve/post_events.py posts
# labelled census rows to /v1/events at EVENTS_PER_S (default 1,000 events/s,
# in requests of 100 rows) and the online learner trains on them and
# publishes a version every 10,000 events.
#
#   sh bench/serve/run.sh              DURATION=10 sh bench/serve/run.sh
#
# Reports requests/s, p50/p99 latency and errors (non-2xx and socket errors),
# and polytask's 100-row throughput as a fraction of the matrix-product
# ceiling: rows/s x FLOP per row / the GEMM peak of bench/gemm_peak (the
# FLOP per row is counted from the model's parameters: 2 per weight of the
# dense layers).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$root/../shared
bin=${POLYTASK:-$root/build/polytask}
out=$here/out
dur=${DURATION:-30}
mkdir -p "$out"
[ -x "$bin" ] || { echo "run.sh: $bin not built" >&2; exit 1; }
for t in wrk gunicorn curl; do command -v $t >/dev/null || { echo "run.sh: needs $t (scripts/deps.sh bench)" >&2; exit 1; }; done
/usr/bin/python3 -c "import flask, torch" 2>/dev/null || { echo "run.sh: needs python3-flask and python3-torch (scripts/deps.sh bench)" >&2; exit 1; }
cp "$bin" "$out/polytask.bin"
bin=$out/polytask.bin
. "$root/bench/lib.sh"

# 1. models: polytask's census MMoE (bench/census/mmoe.yaml) and the peer's
if [ ! -s "$out/mmoe.ptm" ]; then
    "$bin" train --config "$root/bench/census/mmoe.yaml" --out "$out/mmoe.ptm" >"$out/train.log" 2>&1
fi
if [ ! -s "$out/peer.pt" ]; then
    # the column lists of the prepared tables (shared/bench/data/census/columns.txt)
    nums=$(sed -n 's/^numeric=//p' "$shared/bench/data/census/columns.txt")
    cats=$(sed -n 's/^categorical=//p' "$shared/bench/data/census/columns.txt")
    (cd "$shared/bench/peers" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 torch_serve.py fit \
        --train "$shared/bench/data/census/train.csv.gz" --labels income,never_married --cat "$cats" --num "$nums" \
        --out "$out/peer.pt") >"$out/peer_fit.log" 2>&1
fi

# 2. bodies: 100 and 1 rows of the census test table; the rest of it, labelled, as events
/usr/bin/python3 - "$shared/bench/data/census/test.csv.gz" "$out" <<'PY'
import csv, gzip, json, sys
r = csv.DictReader(gzip.open(sys.argv[1], "rt"))
rows = [next(r) for _ in range(100)]
# events: the labelled rows after those, 100 per request, in turn
json.dump({"model": "census", "rows": list(r)}, open(sys.argv[2] + "/events.json", "w"))
for row in rows:
    row.pop("income", None); row.pop("never_married", None)
json.dump({"rows": rows}, open(sys.argv[2] + "/body100.json", "w"))
json.dump({"rows": rows[:1]}, open(sys.argv[2] + "/body1.json", "w"))
PY

# 3. polytask serve
rm -rf "$out/reg.db"* "$out/online"
"$bin" models --registry "$out/reg.db" import census "$out/mmoe.ptm" >/dev/null
key=$("$bin" models --registry "$out/reg.db" keys create bench --scope read 2>/dev/null)
akey=$("$bin" models --registry "$out/reg.db" keys create poster --scope admin 2>/dev/null)
"$bin" serve --registry "$out/reg.db" --listen 127.0.0.1:0 --threads 2 2>"$out/serve.err" &
srv=$!
port=
for i in $(seq 1 100); do
    port=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out/serve.err")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "run.sh: polytask serve did not start" >&2; kill $srv; exit 1; }
load() { # load NAME URL BODY [HEADER]
    BODY=$3 wrk -t2 -c8 -d"${dur}s" --latency -s "$shared/bench/post.lua" ${4:+-H "$4"} "$2" >"$out/$1.wrk" 2>&1
}
load pt100 "http://127.0.0.1:$port/v1/predict" "$out/body100.json" "Authorization: Bearer $key"
load pt1 "http://127.0.0.1:$port/v1/predict" "$out/body1.json" "Authorization: Bearer $key"
# the same 100-row load with events flowing into the online learner
/usr/bin/python3 "$here/post_events.py" --port "$port" --key "$akey" --body "$out/events.json" \
    --rate "${EVENTS_PER_S:-1000}" --seconds "$((dur + 2))" >"$out/events.log" 2>&1 &
poster=$!
sleep 1
load pt100ev "http://127.0.0.1:$port/v1/predict" "$out/body100.json" "Authorization: Bearer $key"
wait $poster || true
sleep 2
curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics.txt"
kill -TERM $srv
wait $srv || true

# 4. the peer
(cd "$shared/bench/peers" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE gunicorn -w 2 -b 127.0.0.1:8099 \
    "torch_serve:app(\"$out/peer.pt\")" >"$out/peer_serve.log" 2>&1) &
for i in $(seq 1 200); do curl -s http://127.0.0.1:8099/healthz >/dev/null 2>&1 && break; sleep 0.2; done
load peer100 "http://127.0.0.1:8099/v1/predict" "$out/body100.json"
pkill -f "gunicorn -w 2 -b 127.0.0.1:8099" || true

# 5. the table
flops=$("$bin" inspect "$out/mmoe.ptm" --json | /usr/bin/python3 -c '
import json, sys
m = json.load(sys.stdin)
# 2 FLOP per weight of every dense matrix (embeddings are lookups)
tot = 0
for p in m["tensors"]:
    shp = p.get("shape", [])
    if len(shp) == 2 and ".emb." not in "." + p["name"]:
        tot += 2 * shp[0] * shp[1]
print(tot)')
summ() { # summ NAME LABEL ROWS
    /usr/bin/python3 - "$out/$1.wrk" "$2" "$3" "$flops" "${PEAK_GFLOPS:-185}" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def lat(p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % p, t)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
non2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
sock = re.search(r"Socket errors:.*", t)
err = int(non2.group(1)) if non2 else 0
rows, flops, peak = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
frac = rps * rows * flops / (peak * 1e9) if flops > 0 else float("nan")
print(f"| {sys.argv[2]} | {rps:.0f} | {lat(50):.2f} | {lat(99):.2f} | {err}{' + ' + sock.group(0) if sock else ''} | {rps*rows:.0f} | {frac:.3f} |")
PY
}
echo "serve benchmark, $(date -u +%Y-%m-%dT%H:%M), $(nproc) cores, wrk -t2 -c8 -d${dur}s; load average at start:$(uptime | sed 's/.*load average://')" | tee "$out/summary.md"
echo "FLOP per row (dense layers): $flops; ceiling: ${PEAK_GFLOPS:-185} GFLOP/s (bench/gemm_peak, 1 thread)" | tee -a "$out/summary.md"
echo "| server | requests/s | p50 ms | p99 ms | errors | rows/s | share of the GEMM ceiling |" | tee -a "$out/summary.md"
echo "|---|---:|---:|---:|---:|---:|---:|" | tee -a "$out/summary.md"
summ peer100 "PyTorch + Flask + gunicorn (2 workers), 100 rows" 100 | tee -a "$out/summary.md"
summ pt100 "polytask serve (2 threads), 100 rows" 100 | tee -a "$out/summary.md"
summ pt1 "polytask serve (2 threads), 1 row" 1 | tee -a "$out/summary.md"
summ pt100ev "polytask serve (2 threads), 100 rows, with events posted" 100 | tee -a "$out/summary.md"
echo | tee -a "$out/summary.md"
echo "events: $(tail -n 1 "$out/events.log"); learner: $(grep -E '^polytask_learner_(events_consumed_total|versions_published_total|lag_events)' "$out/metrics.txt" | sed 's/{model="census"}//' | tr '\n' ' ')" | tee -a "$out/summary.md"
/usr/bin/python3 - "$out/pt100.wrk" "$out/pt100ev.wrk" <<'PY' | tee -a "$out/summary.md"
import re, sys
def p99(f):
    t = open(f).read()
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000
a, b = p99(sys.argv[1]), p99(sys.argv[2])
print(f"predict p99 with events / without: {b:.2f} / {a:.2f} ms = {b / a:.2f}x (target < 1.5x)")
PY
grep '^polytask_running_auc' "$out/metrics.txt" | tee -a "$out/summary.md"
