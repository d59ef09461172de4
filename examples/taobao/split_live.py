#!/usr/bin/env python3
"""Splits the 43-user Taobao log for the online-learning example (README,
"Online learning"): events before 2017-12-02 00:00 (Beijing time) go to
live/history.csv, the log that live.yaml trains on; the later ones, in time
order, go to live/events.json as a POST /v1/events body of raw events
({"model": "taobao", "events": [...]}), to be sent to the server as if they
happened now. Run from anywhere: python3 examples/taobao/split_live.py"""
import csv
import gzip
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
log = os.path.join(here, "../../../shared/data/taobao_userbehavior_43users/UserBehavior_43users.csv.gz")
cut = 1512144000  # 2017-12-02T00:00:00+08:00
rows = sorted(csv.reader(gzip.open(log, "rt")), key=lambda r: int(r[4]))
os.makedirs(os.path.join(here, "live"), exist_ok=True)
with open(os.path.join(here, "live/history.csv"), "w") as f:
    for r in rows:
        if int(r[4]) < cut:
            f.write(",".join(r) + "\n")
cols = ["user_id", "item_id", "category_id", "behavior", "ts"]
live = [dict(zip(cols, r[:4] + [int(r[4])])) for r in rows if int(r[4]) >= cut]
with open(os.path.join(here, "live/events.json"), "w") as f:
    json.dump({"model": "taobao", "events": live}, f)
print(f"history: {len(rows) - len(live)} events, live: {len(live)} events")
