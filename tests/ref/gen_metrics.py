#!/usr/bin/python3
"""gen_metrics.py: regenerates the reference fixtures for src/eval/metrics.c.

Run from anywhere with Debian's Python (python3-numpy, python3-sklearn):
    /usr/bin/python3 tests/ref/gen_metrics.py
It overwrites tests/ref/fixtures/metrics/*.txt; the seed is fixed, so a rerun
with the same numpy/scikit-learn gives the same files. tests/ref/test_ref_metrics.c
reads them and compares the C metrics with the values scikit-learn computed.

File format (whitespace-separated, one record per line, '#' lines are comments):
    n <N>
    <y> <p> <group>           N rows; y and p are float32 values printed in
                              numpy's shortest round-trip form (parse with strtof)
    auc <v>                   roc_auc_score
    gauc <v> <groups_used>    per-group roc_auc_score, weighted by group size,
                              one-class groups skipped
    logloss <v>               mean cross-entropy, p clipped to [1e-7, 1-1e-7]
    cls <thr> <acc> <prec> <rec> <f1> <tp> <fp> <tn> <fn>   at p >= thr
    calibration <v>           mean(p) / mean(y)
    rmse <v>
    mae <v>
    roc <M>                   then M lines "<fpr> <tpr> <thr>" from
                              roc_curve(drop_intermediate=False), thresholds as
                              float32 except the first, which is inf
    end
Doubles are printed with repr() so they round-trip exactly.
"""
import os

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, f1_score, log_loss, mean_absolute_error,
                             mean_squared_error, precision_score, recall_score, roc_auc_score,
                             roc_curve)

EPS = 1e-7
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "metrics")


def f32(x):
    """Shortest text that parses back (strtof) to the same float32."""
    return str(np.float32(x))


def logloss(y, p):
    # Manual clipping: log_loss's eps argument is deprecated/removed in newer
    # scikit-learn; cross-checked against log_loss(eps=...) when it exists.
    q = np.clip(p.astype(np.float64), EPS, 1 - EPS)
    y = y.astype(np.float64)
    v = float(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q))))
    try:
        ref = log_loss(y, p.astype(np.float64), eps=EPS, labels=[0, 1])
        assert abs(ref - v) <= 1e-12 * abs(v), (ref, v)
    except TypeError:
        pass
    return v


def gauc(y, p, g):
    total, weight, used = 0.0, 0.0, 0
    for gid in np.unique(g):
        m = g == gid
        if len(np.unique(y[m])) < 2:
            continue
        total += m.sum() * roc_auc_score(y[m], p[m])
        weight += m.sum()
        used += 1
    return total / weight, used


def write_case(name, y, p, g, classification):
    y = y.astype(np.float32)
    p = p.astype(np.float32)
    g = g.astype(np.int32)
    lines = ["# %s: written by tests/ref/gen_metrics.py (numpy %s, scikit-learn %s)"
             % (name, np.__version__, sklearn.__version__), "n %d" % len(y)]
    lines += ["%s %s %d" % (f32(a), f32(b), c) for a, b, c in zip(y, p, g)]
    if classification:
        yi = y.astype(np.int64)
        lines.append("auc %r" % float(roc_auc_score(yi, p)))
        v, used = gauc(yi, p, g)
        lines.append("gauc %r %d" % (float(v), used))
        lines.append("logloss %r" % logloss(yi, p))
        for thr in (0.5, 0.3, 0.05, 2.0):
            pred = (p.astype(np.float64) >= thr).astype(np.int64)
            tp = int(((pred == 1) & (yi == 1)).sum())
            fp = int(((pred == 1) & (yi == 0)).sum())
            tn = int(((pred == 0) & (yi == 0)).sum())
            fn = int(((pred == 0) & (yi == 1)).sum())
            lines.append("cls %r %r %r %r %r %d %d %d %d" % (
                thr, float(accuracy_score(yi, pred)),
                float(precision_score(yi, pred, zero_division=0)),
                float(recall_score(yi, pred, zero_division=0)),
                float(f1_score(yi, pred, zero_division=0)), tp, fp, tn, fn))
        fpr, tpr, thr = roc_curve(yi, p, drop_intermediate=False)
        # scikit-learn < 1.3 starts at max(score) + 1 instead of inf.
        thr = thr.astype(np.float64)
        thr[0] = np.inf
        lines.append("roc %d" % len(fpr))
        lines += ["%r %r %s" % (float(a), float(b), "inf" if i == 0 else f32(c))
                  for i, (a, b, c) in enumerate(zip(fpr, tpr, thr))]
    lines.append("calibration %r" % float(np.mean(p.astype(np.float64)) / np.mean(y.astype(np.float64))))
    lines.append("rmse %r" % float(np.sqrt(mean_squared_error(y.astype(np.float64), p.astype(np.float64)))))
    lines.append("mae %r" % float(mean_absolute_error(y.astype(np.float64), p.astype(np.float64))))
    lines.append("end")
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def groups(rng, n, ngroups):
    """Group ids spread over int32, negatives included."""
    ids = rng.integers(-2**31, 2**31 - 1, size=ngroups, dtype=np.int64)
    return ids[rng.integers(0, ngroups, size=n)]


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240607)

    # Two-decimal scores: many ties; some groups forced to a single class.
    n = 1200
    y = (rng.random(n) < 0.4).astype(np.int64)
    p = np.round(sigmoid(1.2 * (2 * y - 1) + rng.normal(0, 1.5, n)), 2)
    g = groups(rng, n, 50)
    for gid in np.unique(g)[:4]:
        y[g == gid] = 1 if gid % 2 else 0
    write_case("ties_2dp", y, p, g, True)

    # One-decimal scores, exact 0 and 1 included (logloss clipping), few groups.
    n = 800
    y = (rng.random(n) < 0.5).astype(np.int64)
    p = np.round(np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.3, n), 0, 1), 1)
    g = rng.integers(-3, 5, size=n)
    y[g == 4] = 1  # one whole group positive, to be skipped
    write_case("ties_1dp", y, p, g, True)

    # Imbalanced (~3% positive), half the scores continuous, half 2-decimal.
    n = 1000
    y = (rng.random(n) < 0.03).astype(np.int64)
    p = sigmoid(-3.5 + 2.0 * y + rng.normal(0, 1.0, n))
    half = rng.random(n) < 0.5
    p[half] = np.round(p[half], 2)
    g = groups(rng, n, 20)
    write_case("imbalanced", y, p, g, True)

    # Regression targets: only calibration, RMSE and MAE apply.
    n = 500
    y = np.exp(rng.normal(0, 1, n))
    p = y * np.exp(rng.normal(0, 0.3, n)) + rng.normal(0, 0.2, n)
    write_case("regression", y, p, np.zeros(n, dtype=np.int64), False)


if __name__ == "__main__":
    main()
