#!/usr/bin/python3
"""gen_rank.py: regenerates the reference fixture for src/eval/rank.c.

Run from anywhere with Debian's Python (python3-numpy, python3-sklearn):
    /usr/bin/python3 tests/ref/gen_rank.py
It overwrites tests/ref/fixtures/rank/lists.txt; the seed is fixed, so a rerun
with the same numpy/scikit-learn gives the same file. tests/ref/test_ref_rank.c
reads it, ranks each list with rank_order and compares the C metrics with:
  - NDCG@k: sklearn.metrics.ndcg_score([y], [s], k=k). Scores are tie-free
    (checked below), since sklearn averages the gain over tied scores while
    rank_order breaks ties by index;
  - precision, recall, hit, AP@k and RR: the plain definitions below
    (scikit-learn has no top-k recall/precision over a ranked list).

File format (whitespace-separated, '#' lines are comments):
    case <name> <n> <nrel> <nk>   one user: n listed items, nrel relevant in
                                  total (>= the relevant ones listed)
    y <n values>                  relevance per item, by item index (float32)
    s <n values>                  score per item, by item index (float32)
    order <n ints>                expected ranking (score desc, index asc)
    at <k> <ndcg> <prec> <recall> <hit> <ap>     nk lines
    rr <v>
    ...
    end
Floats are printed in numpy's shortest float32 round-trip form (strtof),
doubles with repr() so they round-trip exactly.
"""
import os

import numpy as np
import sklearn
from sklearn.metrics import ndcg_score

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "rank")


def f32(x):
    return str(np.float32(x))


def order_of(s):
    """Score descending, ties by item index ascending (rank_order's rule)."""
    return np.lexsort((np.arange(len(s)), -s.astype(np.float64)))


def ndcg_plain(rel, k):
    """Linear gain, 1/log2(i+2) discount, ideal from rel sorted descending:
    our reading of ndcg_score, checked against it for every case."""
    top = rel[:k]
    disc = 1.0 / np.log2(np.arange(len(rel)) + 2.0)
    dcg = float(np.sum(top * disc[:len(top)]))
    ideal = np.sort(rel)[::-1][:k]
    idcg = float(np.sum(ideal * disc[:len(ideal)]))
    return dcg / idcg if idcg > 0 else 0.0


def precision_at(rel, k):
    return sum(1 for r in rel[:k] if r > 0) / k


def recall_at(rel, k, nrel):
    return sum(1 for r in rel[:k] if r > 0) / nrel if nrel > 0 else 0.0


def hit_at(rel, k):
    return 1.0 if any(r > 0 for r in rel[:k]) else 0.0


def ap_at(rel, k, nrel):
    """Sum of precision@(i+1) at each relevant position i < k, / min(k, nrel)."""
    if nrel <= 0:
        return 0.0
    hits, total = 0, 0.0
    for i, r in enumerate(rel[:k]):
        if r > 0:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, nrel)


def rr(rel):
    for i, r in enumerate(rel):
        if r > 0:
            return 1.0 / (i + 1)
    return 0.0


def case(name, y, s, extra_rel=0):
    """One user; extra_rel relevant items are outside the list (recall/AP)."""
    y = y.astype(np.float32)
    s = s.astype(np.float32)
    n = len(y)
    assert n >= 2, "ndcg_score needs at least two items"
    assert len(np.unique(s)) == n, "scores must be tie-free as float32"
    order = order_of(s)
    rel = y[order].astype(np.float64)
    nrel = int((y > 0).sum()) + extra_rel
    ks = sorted(set(k for k in (1, 2, 3, 5, 10, 20, n, n + 7) if k >= 1))
    lines = ["case %s %d %d %d" % (name, n, nrel, len(ks)),
             "y " + " ".join(f32(v) for v in y),
             "s " + " ".join(f32(v) for v in s),
             "order " + " ".join(str(int(i)) for i in order)]
    for k in ks:
        ref = float(ndcg_score([y.astype(np.float64)], [s.astype(np.float64)], k=k))
        mine = ndcg_plain(rel, k)
        assert abs(ref - mine) <= 1e-12, (name, k, ref, mine)
        lines.append("at %d %r %r %r %r %r" % (k, ref, precision_at(rel, k), recall_at(rel, k, nrel),
                                               hit_at(rel, k), ap_at(rel, k, nrel)))
    lines.append("rr %r" % rr(rel))
    return lines


def tie_free_scores(rng, n):
    while True:
        s = rng.normal(0, 1, n).astype(np.float32)
        if len(np.unique(s)) == n:
            return s


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20250105)
    lines = ["# lists: written by tests/ref/gen_rank.py (numpy %s, scikit-learn %s)"
             % (np.__version__, sklearn.__version__)]

    # Binary relevance, scores mildly informative, various lengths.
    for u in range(16):
        n = int(rng.integers(2, 60))
        y = (rng.random(n) < rng.uniform(0.05, 0.4)).astype(np.float32)
        s = tie_free_scores(rng, n) + 0.8 * y
        lines += case("binary%02d" % u, y, s, extra_rel=int(rng.integers(0, 3)) if u % 3 == 0 else 0)

    # Graded relevance 0..4 (NDCG uses the grade; the rest only rel > 0).
    for u in range(10):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 5, n) * (rng.random(n) < 0.5)
        s = tie_free_scores(rng, n) + 0.3 * y
        lines += case("graded%02d" % u, y, s)

    # Fractional grades and scores spanning signs and magnitudes.
    n = 25
    y = np.round(rng.random(n) * 3, 2) * (rng.random(n) < 0.6)
    s = np.float32(rng.choice([-1, 1], n)) * np.float32(10.0) ** rng.uniform(-20, 20, n).astype(np.float32)
    lines += case("fractional", y, s)

    # Edge cases: nothing relevant, everything relevant, only the last one,
    # one relevant item far outside a two-item list.
    lines += case("none", np.zeros(12), tie_free_scores(rng, 12))
    lines += case("all", np.ones(7), tie_free_scores(rng, 7))
    y = np.zeros(9)
    s = tie_free_scores(rng, 9)
    y[int(np.argmin(s))] = 2
    lines += case("last", y, s)
    lines += case("pair_outside", np.array([0, 1]), np.array([0.5, 0.25]), extra_rel=5)

    lines.append("end")
    path = os.path.join(OUT, "lists.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
