#!/usr/bin/python3
"""Synthetic e-commerce event log for the `polytask build` benchmark (speed,
memory): view, cart and purchase events of users on items, sorted by time.
Not for quality claims: use real data.

  gen_events.py --events 20000000 --users 1000000 --items 500000 --categories 5000 \\
      --days 30 --seed 1 --out data/events.csv          (or .csv.gz: gzip)

writes a CSV with the header user_id,item_id,category_id,event_type,timestamp
(event_type view, cart or purchase; timestamp unix seconds, from 2024-01-01
00:00 UTC), exactly --events rows in timestamp order (ties in any order).

Shape:
- views: about events / 1.08. Users and items are drawn Zipf-like (exponent
  1.1 over ranks, with a small rank shift that keeps the single heaviest user
  or item from taking over 10% of the log), ids shuffled so id order says
  nothing about popularity. Each item has one category, drawn Zipf-like
  (exponent 1.0) over the categories. Days are uniform but weekends get 15%
  more; hours follow a daily cycle with a trough at 3-5 h and a peak at
  20-21 h UTC.
- carts: 6% of views (exact count) are followed by a cart of the same user
  and item, chosen with weights from a per-user and a per-item propensity
  (lognormal), after a lognormal delay (median 8 min, 94% within 1 h).
- purchases: a third of carts (so 2% of views) are followed by a purchase,
  chosen with per-user and per-item weights, after a lognormal delay (median
  30 min, about 98% within 1 day).
Every event lies in [start, start + days): a delay that would run past the
end is drawn again. The counts make the total exactly --events.

Needs only numpy. 20M rows: about 25 s and 800 MB of memory on one core; the text is
built with numpy byte arithmetic in chunks, not per row in Python. The file is
written to PATH.part and renamed when complete.
"""
import argparse, gzip, os, sys, time
import numpy as np

START = 1704067200  # 2024-01-01 00:00:00 UTC, a Monday
DAY = 86400
# relative views per hour of the day (UTC): night trough, evening peak
HOURS = np.array([0.55, 0.35, 0.22, 0.16, 0.14, 0.18, 0.30, 0.50, 0.70, 0.85, 0.95, 1.00,
                  1.05, 1.00, 0.95, 0.95, 1.00, 1.10, 1.30, 1.55, 1.75, 1.80, 1.50, 0.95])
TYPES = (b"view", b"cart", b"purchase")


def zipf_cdf(n, a, shift):
    # P(rank r) ~ 1 / (r + shift)^a for r = 1..n
    w = 1.0 / (np.arange(1, n + 1, dtype=np.float64) + shift) ** a
    c = np.cumsum(w)
    return c / c[-1]


def draw(rng, cdf, size):
    # inverse-CDF draw of 0-based ranks; int32
    r = np.searchsorted(cdf, rng.random(size), side="right")
    np.minimum(r, len(cdf) - 1, out=r)
    return r.astype(np.int32)


def zipf_ids(rng, n, size, a, shift):
    perm = rng.permutation(n).astype(np.int32)
    return perm[draw(rng, zipf_cdf(n, a, shift), size)]


def weighted_pick(rng, weights, k):
    # k indices without replacement, P ~ weights (Efraimidis-Spirakis: the k
    # smallest Exp(1)/w keys); weight 0 = never
    if k <= 0:
        return np.empty(0, np.int64)
    with np.errstate(divide="ignore"):
        keys = rng.standard_exponential(len(weights)) / weights
    if k >= len(weights):
        return np.arange(len(weights))
    idx = np.argpartition(keys, k - 1)[:k]
    if not np.isfinite(keys[idx]).all():
        sys.exit("gen_events.py: too few eligible events for the funnel (raise --days or --events)")
    return np.sort(idx)


def delays(rng, t0, median_s, sigma, min_s, end):
    # lognormal delays after times t0, each event kept inside [.., end): a
    # delay that overshoots is drawn again, and after 20 tries taken uniform
    # in what is left
    n = len(t0)
    d = np.maximum(min_s, np.rint(median_s * np.exp(sigma * rng.standard_normal(n)))).astype(np.int64)
    for _ in range(20):
        bad = np.flatnonzero(t0 + d >= end)
        if len(bad) == 0:
            return d
        d[bad] = np.maximum(min_s, np.rint(median_s * np.exp(sigma * rng.standard_normal(len(bad)))))
    bad = np.flatnonzero(t0 + d >= end)
    room = end - 1 - t0[bad]  # >= min_s: callers only pass t0 < end - 60
    d[bad] = min_s + (rng.random(len(bad)) * (room - min_s + 1)).astype(np.int64)
    return d


class Text:
    """CSV rows from integer columns with numpy byte arithmetic: each row is laid
    out in a fixed-width byte matrix, a mask drops leading zeros and the unused
    tail of event_type, and the masked bytes are the text."""

    def __init__(self, maxima):
        self.widths = [len(str(max(1, int(m)))) for m in maxima]
        tw = max(len(t) for t in TYPES)
        self.tbytes = np.zeros((len(TYPES), tw), np.uint8)
        self.tmask = np.zeros((len(TYPES), tw), bool)
        for i, t in enumerate(TYPES):
            self.tbytes[i, :len(t)] = np.frombuffer(t, np.uint8)
            self.tmask[i, :len(t)] = True

    def rows(self, user, item, cat, etype, ts):
        m = len(user)
        w = self.widths
        width = w[0] + w[1] + w[2] + self.tbytes.shape[1] + w[3] + 5
        buf = np.empty((m, width), np.uint8)
        mask = np.ones((m, width), bool)
        pos = 0
        for k, x in enumerate((user, item, cat, None, ts)):
            if x is None:  # event_type
                tw = self.tbytes.shape[1]
                buf[:, pos:pos + tw] = self.tbytes[etype]
                mask[:, pos:pos + tw] = self.tmask[etype]
                pos += tw
            else:
                wd = w[k if k < 3 else 3]
                x = x.astype(np.int64)
                p = 10 ** np.arange(wd - 1, -1, -1, dtype=np.int64)
                buf[:, pos:pos + wd] = (x[:, None] // p) % 10 + 48
                mask[:, pos:pos + wd - 1] = x[:, None] >= p[:-1]
                pos += wd
            buf[:, pos] = ord(",") if k < 4 else ord("\n")
            pos += 1
        return buf[mask].tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=500_000)
    ap.add_argument("--categories", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="PATH.csv, or PATH.csv.gz for gzip")
    a = ap.parse_args()
    if a.events < 1 or a.users < 1 or a.items < 1 or a.categories < 1 or a.days < 1:
        ap.error("--events, --users, --items, --categories and --days must be >= 1")
    t_begin = time.time()
    rng = np.random.default_rng(a.seed)
    n = a.events
    n_view = min(n, max(1, int(round(n / 1.08))))
    rest = n - n_view
    n_cart = int(round(rest * 0.75))  # cart/view 6%, purchase/view 2%: 6 of every 8
    n_buy = rest - n_cart
    end = START + a.days * DAY

    # --- views
    vu = zipf_ids(rng, a.users, n_view, 1.1, 20.0)
    vi = zipf_ids(rng, a.items, n_view, 1.1, 5.0)
    dow = np.arange(a.days) % 7  # START is a Monday: 5, 6 = weekend
    dw = np.where(dow >= 5, 1.15, 1.0)
    day = np.searchsorted(np.cumsum(dw) / dw.sum(), rng.random(n_view), side="right")
    np.minimum(day, a.days - 1, out=day)
    hour = np.searchsorted(np.cumsum(HOURS) / HOURS.sum(), rng.random(n_view), side="right")
    np.minimum(hour, 23, out=hour)
    vt = START + day * DAY + hour * 3600 + rng.integers(0, 3600, n_view)
    del day, hour

    # --- funnel: propensities per user and item; nothing starts in the last minute
    cart_u = rng.lognormal(0.0, 0.5, a.users)
    cart_i = rng.lognormal(0.0, 0.7, a.items)
    wv = cart_u[vu] * cart_i[vi]
    wv[vt >= end - 60] = 0.0
    ci = weighted_pick(rng, wv, n_cart)
    del wv
    cu, cit = vu[ci], vi[ci]
    dc = delays(rng, vt[ci], 8 * 60, 1.3, 5, end)
    ct = vt[ci] + dc
    del ci
    buy_u = rng.lognormal(0.0, 0.5, a.users)
    buy_i = rng.lognormal(0.0, 0.7, a.items)
    wc = buy_u[cu] * buy_i[cit]
    wc[ct >= end - 60] = 0.0
    bi = weighted_pick(rng, wc, n_buy)
    del wc
    bu, bit = cu[bi], cit[bi]
    db = delays(rng, ct[bi], 30 * 60, 1.9, 10, end)
    bt = ct[bi] + db
    cart_1h = float(np.mean(dc <= 3600)) if len(dc) else 0.0
    buy_1d = float(np.mean(db <= DAY)) if len(db) else 0.0
    del dc, db

    # --- all events, time order
    user = np.concatenate([vu, cu, bu])
    item = np.concatenate([vi, cit, bit])
    etype = np.concatenate([np.zeros(n_view, np.uint8), np.ones(n_cart, np.uint8), np.full(n_buy, 2, np.uint8)])
    ts = np.concatenate([vt, ct, bt])
    del vu, vi, vt, cu, cit, ct, bu, bit, bt
    order = np.argsort(ts, kind="stable")
    item_cat = zipf_ids(rng, a.categories, a.items, 1.0, 0.0)
    t_gen = time.time()

    # --- write
    text = Text([a.users - 1, a.items - 1, a.categories - 1, end])
    tmp = a.out + ".part"
    d = os.path.dirname(a.out)
    if d:
        os.makedirs(d, exist_ok=True)
    f = gzip.open(tmp, "wb", compresslevel=3) if a.out.endswith(".gz") else open(tmp, "wb")
    with f:
        f.write(b"user_id,item_id,category_id,event_type,timestamp\n")
        chunk = 500_000
        for s in range(0, n, chunk):
            o = order[s:s + chunk]
            it = item[o]
            f.write(text.rows(user[o], it, item_cat[it], etype[o], ts[o]))
    os.replace(tmp, a.out)
    t_end = time.time()

    # --- summary
    counts = np.bincount(etype, minlength=3)
    uc = np.bincount(user, minlength=a.users)
    ic = np.bincount(item, minlength=a.items)
    t0, t1 = int(ts[order[0]]), int(ts[order[-1]])
    fmt = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    p = lambda *x: print(*x, file=sys.stderr)
    p(f"gen_events.py: {a.out}: {n} rows, {os.path.getsize(a.out) / 2**20:.1f} MiB, "
      f"generated in {t_gen - t_begin:.1f} s, written in {t_end - t_gen:.1f} s")
    p(f"  distinct users {np.count_nonzero(uc)} of {a.users} (heaviest {uc.max()} events, {uc.max() / n:.2%}), "
      f"distinct items {np.count_nonzero(ic)} of {a.items} (most popular {ic.max()} events, {ic.max() / n:.2%})")
    p(f"  view {counts[0]}  cart {counts[1]}  purchase {counts[2]}  "
      f"cart/view {counts[1] / max(1, counts[0]):.4f}  purchase/view {counts[2] / max(1, counts[0]):.4f}  "
      f"purchase/cart {counts[2] / max(1, counts[1]):.4f}")
    p(f"  carts within 1 h of their view {cart_1h:.1%}, purchases within 1 d of their cart {buy_1d:.1%}")
    p(f"  time span {fmt(t0)} .. {fmt(t1)} UTC ({(t1 - t0) / DAY:.2f} days, unix {t0} .. {t1})")


if __name__ == "__main__":
    main()
