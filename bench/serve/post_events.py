"""Posts labelled rows to polytask serve's /v1/events at a steady rate.

    python3 post_events.py --port P --key ADMIN_KEY --body events.json --rate 1000 --seconds 30

events.json is {"model": NAME, "rows": [...]}; requests carry --per-request
rows each (default 100), taken in turn from the file's rows (cycling), and go
out every per-request / rate seconds on one keep-alive connection (a late
request is sent at once, not skipped). The last
line printed is the summary: events posted, accepted, the achieved rate,
errors and the p50/p99 of the /v1/events latency.
"""
import argparse
import http.client
import json
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--body", required=True)
ap.add_argument("--rate", type=float, default=1000)
ap.add_argument("--seconds", type=float, default=30)
ap.add_argument("--per-request", type=int, default=100)
a = ap.parse_args()
src = json.load(open(a.body))
rows, allrows = a.per_request, src["rows"]
bodies = [json.dumps({"model": src["model"], "rows": allrows[i:i + rows]}).encode()
          for i in range(0, len(allrows) - rows + 1, rows)]
gap = rows / a.rate
conn = http.client.HTTPConnection("127.0.0.1", a.port)
hdr = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
posted = accepted = errors = 0
lat = []
t0 = time.monotonic()
nxt = t0
while time.monotonic() - t0 < a.seconds:
    now = time.monotonic()
    if now < nxt:
        time.sleep(nxt - now)
    nxt += gap
    s = time.monotonic()
    body = bodies[posted // rows % len(bodies)]
    try:
        conn.request("POST", "/v1/events", body, hdr)
        r = conn.getresponse()
        r.read()
        ok = r.status == 202
    except (OSError, http.client.HTTPException):
        ok = False
        conn = http.client.HTTPConnection("127.0.0.1", a.port)
    lat.append(time.monotonic() - s)
    posted += rows
    if ok:
        accepted += rows
    else:
        errors += 1
el = time.monotonic() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(f"{posted} events posted, {accepted} accepted in {el:.1f} s ({accepted / el:.0f} events/s), "
      f"{errors} failed requests, /v1/events p50 {q(0.5):.1f} ms p99 {q(0.99):.1f} ms")
