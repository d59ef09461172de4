#!/bin/sh
# Serving benchmark: polytask serve against the PyTorch + Flask + gunicorn peer
# (shared/bench/peers/torch_serve.py, 2 workers, 1 torch thread each), both
# serving the census MMoE, loaded by wrk on loopback with shared/bench/post.lua
# at 8 connections for DURATION seconds (default 30), one after the other in
# one run, ROUNDS times (default 3) in turn: 100-row requests to both, then
# 1-row requests to polytask, then
# 100-row requests to polytask again while bench/serve/post_events.py posts
# labelled census rows to /v1/events at EVENTS_PER_S (default 1,000 events/s,
# in requests of 100 rows) and the online learner trains on them and
# publishes a version every 10,000 events.
#
#   sh bench/serve/run.sh              DURATION=10 ROUNDS=1 sh bench/serve/run.sh
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

# 3. both servers up at once; the loads take turns, ROUNDS times (default 3),
# so a slow spell of this shared machine hits both engines alike; the table
# gives each figure's median over the rounds
rm -rf "$out/reg.db"* "$out/online" "$out"/*.wrk
"$bin" models --registry "$out/reg.db" import census "$out/mmoe.ptm" >/dev/null
key=$("$bin" models --registry "$out/reg.db" keys create bench --scope read 2>/dev/null)
akey=$("$bin" models --registry "$out/reg.db" keys create poster --scope admin 2>/dev/null)
"$bin" serve --registry "$out/reg.db" --listen 127.0.0.1:0 --threads 2 2>"$out/serve.err" &
srv=$!
(cd "$shared/bench/peers" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE gunicorn -w 2 -b 127.0.0.1:8099 \
    "torch_serve:app(\"$out/peer.pt\")" >"$out/peer_serve.log" 2>&1) &
stop_all() { kill -TERM $srv 2>/dev/null; pkill -f "gunicorn -w 2 -b 127.0.0.1:8099" 2>/dev/null; }
trap stop_all EXIT
port=
for i in $(seq 1 100); do
    port=$(sed -n 's/^polytask: serving on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out/serve.err")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "run.sh: polytask serve did not start" >&2; exit 1; }
for i in $(seq 1 200); do curl -s http://127.0.0.1:8099/healthz >/dev/null 2>&1 && break; sleep 0.2; done
load() { # load NAME URL BODY [HEADER]
    BODY=$3 wrk -t2 -c8 -d"${dur}s" --latency -s "$shared/bench/post.lua" ${4:+-H "$4"} "$2" >"$out/$1.wrk" 2>&1
}
rounds=${ROUNDS:-3}
for r in $(seq 1 "$rounds"); do
    load "peer100.$r" "http://127.0.0.1:8099/v1/predict" "$out/body100.json"
    load "pt100.$r" "http://127.0.0.1:$port/v1/predict" "$out/body100.json" "Authorization: Bearer $key"
    load "pt1.$r" "http://127.0.0.1:$port/v1/predict" "$out/body1.json" "Authorization: Bearer $key"
    # the same 100-row load with events flowing into the online learner
    /usr/bin/python3 "$here/post_events.py" --port "$port" --key "$akey" --body "$out/events.json" \
        --rate "${EVENTS_PER_S:-1000}" --seconds "$((dur + 2))" >"$out/events.$r.log" 2>&1 &
    poster=$!
    sleep 1
    load "pt100ev.$r" "http://127.0.0.1:$port/v1/predict" "$out/body100.json" "Authorization: Bearer $key"
    wait $poster || true
    sleep 2
done
curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics.txt"
stop_all
trap - EXIT
wait $srv || true

# 4. the table
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
echo "serve benchmark, $(date -u +%Y-%m-%dT%H:%M), $(nproc) cores, wrk -t2 -c8 -d${dur}s, $rounds rounds taking turns (medians); load average at the end:$(uptime | sed 's/.*load average://')" | tee "$out/summary.md"
echo "FLOP per row (dense layers): $flops; ceiling: ${PEAK_GFLOPS:-185} GFLOP/s (bench/gemm_peak, 1 thread)" | tee -a "$out/summary.md"
/usr/bin/python3 - "$out" "$rounds" "$flops" "${PEAK_GFLOPS:-185}" <<'PY' | tee -a "$out/summary.md"
import re, statistics, sys
out, rounds, flops, peak = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def parse(f):
    t = open(f).read()
    def lat(p):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % p, t)
        if not m: return float("nan")
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v if u == "ms" else v * 1000
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    non2 = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    err = (int(non2.group(1)) if non2 else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return rps, lat(50), lat(99), err
res = {}
for name in ("peer100", "pt100", "pt1", "pt100ev"):
    runs = [parse(f"{out}/{name}.{r}.wrk") for r in range(1, rounds + 1)]
    res[name] = dict(rps=statistics.median(x[0] for x in runs), p50=statistics.median(x[1] for x in runs),
                     p99=statistics.median(x[2] for x in runs), err=sum(x[3] for x in runs),
                     all=" / ".join(f"{x[0]:.0f}" for x in runs))
print("| server | requests/s (median) | each round | p50 ms | p99 ms | errors | rows/s | share of the GEMM ceiling |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for name, label, rows in (("peer100", "PyTorch + Flask + gunicorn (2 workers), 100 rows", 100),
                          ("pt100", "polytask serve (2 threads), 100 rows", 100),
                          ("pt1", "polytask serve (2 threads), 1 row", 1),
                          ("pt100ev", "polytask serve (2 threads), 100 rows, 1,000 events/s posted", 100)):
    r = res[name]
    frac = r["rps"] * rows * flops / (peak * 1e9)
    print(f"| {label} | {r['rps']:.0f} | {r['all']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['err']} | {r['rps'] * rows:.0f} | {frac:.3f} |")
a, b = res["pt100"], res["peer100"]
print()
print(f"100 rows: polytask / peer requests/s = {a['rps'] / b['rps']:.1f}x (target >= 10x); p99 {a['p99']:.1f} vs {b['p99']:.1f} ms")
print(f"1 row: p99 {res['pt1']['p99']:.2f} ms (target < 2 ms)")
print(f"predict p99 with events / without: {res['pt100ev']['p99']:.2f} / {a['p99']:.2f} ms = {res['pt100ev']['p99'] / a['p99']:.2f}x (target < 1.5x)")
PY
echo "events (per round): $(for r in $(seq 1 "$rounds"); do tail -n 1 "$out/events.$r.log" | sed 's/, 0 failed requests//'; echo ' | '; done | tr -d '\n')" | tee -a "$out/summary.md"
echo "learner at the end: $(grep -E '^polytask_learner_(events_consumed_total|versions_published_total|lag_events|events_skipped_total)' "$out/metrics.txt" | sed 's/{model="census"}//' | tr '\n' ' ')" | tee -a "$out/summary.md"
grep '^polytask_running_auc' "$out/metrics.txt" | tail -n 4 | tee -a "$out/summary.md"
