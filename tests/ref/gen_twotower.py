#!/usr/bin/python3
"""gen_twotower.py: PyTorch reference fixture for the two-tower model
(src/rec/twotower.c).

Run with Debian's interpreter (python3-torch), CPU, from any folder:

    /usr/bin/python3 tests/ref/gen_twotower.py

It REGENERATES tests/ref/fixtures/twotower/batch.txt (ids only) and
batch_attr.txt (with item categories and price bands); the seeds are fixed, so
a rerun with the same torch build gives the same files. Commit them after
regenerating. tests/ref/test_ref_twotower.c reads them.

The model, as twotower.h states it (weights [out, in], biases [out]):
  item input  x_j = E[j] + Ec[cat_j] + Eb[band_j] (a -1 attribute adds
              nothing; batch.txt has neither table: x_j = E[j])
  item tower  v_j = Wv x_j + bv                   tt.item.weight, tt.item.bias
  user tower  p = mean of x over the pooled items (zeros when none)
              u = W2 relu(W1 p + b1) + b2         tt.user.fc0.*, tt.user.fc1.*
  E: tt.item_emb [N, D0]; Ec: tt.cat_emb [NC, D0]; Eb: tt.band_emb [NB, D0].
The batch loss (rec_tt_batch_loss): row b pools hist[hoff[b]:hoff[b+1]],
its positive is column b of the candidates cand[0:C] (C >= B, the B
positives first, then the extra negatives); logits S[b, c] = <u_b, v_cand[c]>
- logq[c]; a column c != b holding the same item as cand[b] is masked out
(-inf); loss = mean over rows of cross-entropy(S[b], b).

Fixture arrays: N, D0, D, B, C, H (scalars); batch_attr.txt also NC, NB
(scalars) and item_cat, item_band [N]; init.<param> for the 7 (9)
parameters; hoff [B+1], hist, cand [C], logq [C]; loss; grad.<param>;
then the inference path: uoff [U+1], uitem (a rec_hist of U = 4 users with
0, 2, 4 and 7 items), user_vec [U, D] (the mean over each user's LAST H
items; zeros for the empty user), item_vec [N, D].
Everything is computed in float64 from float32 draws, so the fixture holds
the float64 answer rounded to float32 once.
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from refio import F64, Fixture, leaf, rnd, write_all  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "twotower")

N, D0, D, H = 12, 5, 4, 3
NC, NB = 4, 16  # NB: CATALOG_PRICE_BANDS
NAMES = ["tt.item_emb", "tt.item.weight", "tt.item.bias", "tt.user.fc0.weight", "tt.user.fc0.bias",
         "tt.user.fc1.weight", "tt.user.fc1.bias"]
SHAPES = [(N, D0), (D, D0), (D,), (D, D0), (D,), (D, D), (D,)]
ATTR_NAMES = ["tt.cat_emb", "tt.band_emb"]
ATTR_SHAPES = [(NC, D0), (NB, D0)]
# categories and bands of the 12 items: -1 unknown; category 3 and most
# bands belong to no item (their gradients stay 0)
ITEM_CAT = [0, 2, -1, 1, 0, 2, 1, -1, 0, 2, 1, 0]
ITEM_BAND = [3, -1, 0, 3, 15, 7, -1, 0, 3, 2, 15, -1]


def user_tower(p, x):
    h1 = torch.relu(x @ p["tt.user.fc0.weight"].T + p["tt.user.fc0.bias"])
    return h1 @ p["tt.user.fc1.weight"].T + p["tt.user.fc1.bias"]


def inputs(p, ids):
    """x_j for the item ids (a list): E[j], plus the attribute rows."""
    rows = []
    for j in ids:
        x = p["tt.item_emb"][j]
        if "tt.cat_emb" in p and ITEM_CAT[j] >= 0:
            x = x + p["tt.cat_emb"][ITEM_CAT[j]]
        if "tt.band_emb" in p and ITEM_BAND[j] >= 0:
            x = x + p["tt.band_emb"][ITEM_BAND[j]]
        rows.append(x)
    return torch.stack(rows)


def item_tower(p, ids):
    return inputs(p, ids) @ p["tt.item.weight"].T + p["tt.item.bias"]


def pool(p, hoff, hist):
    rows = []
    for b in range(len(hoff) - 1):
        ids = hist[hoff[b]:hoff[b + 1]]
        rows.append(inputs(p, ids).mean(0) if ids else torch.zeros(D0, dtype=F64))
    return torch.stack(rows)


def make(name, attr):
    fx = Fixture(name, "two-tower batch loss and inference%s: written by tests/ref/gen_twotower.py (torch %s)"
                 % (" with item categories and price bands" if attr else "", torch.__version__))
    names, shapes = NAMES + (ATTR_NAMES if attr else []), SHAPES + (ATTR_SHAPES if attr else [])
    p = {n: leaf(rnd(*s, scale=0.5)) for n, s in zip(names, shapes)}

    # 6 rows: an empty history (row 2), a repeated item (row 4); positives
    # with item 3 twice; extra negatives include 3 again and row 0's 7.
    hists = [[1, 2], [5], [], [0, 9, 10], [2, 2, 11], [6]]
    pos = [3, 7, 3, 8, 4, 0]
    neg = [3, 10, 7]
    hoff = [0]
    for h in hists:
        hoff.append(hoff[-1] + len(h))
    hist = [i for h in hists for i in h]
    cand = pos + neg
    B, C = len(pos), len(cand)
    logq = rnd(C)

    u = user_tower(p, pool(p, hoff, hist))
    v = item_tower(p, cand)
    S = u @ v.T - logq
    c = torch.tensor(cand)
    mask = (c[None, :] == c[:B, None]) & ~torch.eye(B, C, dtype=torch.bool)
    S = S.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(S, torch.arange(B))
    loss.backward()

    for k, v_ in (("N", N), ("D0", D0), ("D", D), ("B", B), ("C", C), ("H", H)):
        fx.add(k, float(v_))
    if attr:
        fx.add("NC", float(NC))
        fx.add("NB", float(NB))
        fx.add("item_cat", torch.tensor(ITEM_CAT, dtype=F64))
        fx.add("item_band", torch.tensor(ITEM_BAND, dtype=F64))
    for n in names:
        fx.add("init." + n, p[n])
    fx.add("hoff", torch.tensor(hoff, dtype=F64))
    fx.add("hist", torch.tensor(hist, dtype=F64))
    fx.add("cand", torch.tensor(cand, dtype=F64))
    fx.add("logq", logq)
    fx.add("loss", loss)
    for n in names:
        fx.add("grad." + n, p[n].grad)

    # inference: each user's last H items; the empty user gets zeros
    users = [[], [4, 1], [0, 5, 5, 9], [11, 2, 3, 7, 6, 1, 8]]
    uoff = [0]
    for us in users:
        uoff.append(uoff[-1] + len(us))
    last = [us[-H:] for us in users]
    loff = [0]
    for us in last:
        loff.append(loff[-1] + len(us))
    with torch.no_grad():
        uv = user_tower(p, pool(p, loff, [i for us in last for i in us]))
        uv[0] = 0.0
        iv = item_tower(p, list(range(N)))
    fx.add("uoff", torch.tensor(uoff, dtype=F64))
    fx.add("uitem", torch.tensor([i for us in users for i in us], dtype=F64))
    fx.add("user_vec", uv)
    fx.add("item_vec", iv)
    return fx


def main():
    torch.set_default_dtype(F64)
    torch.manual_seed(20250301)
    plain = make("batch", False)
    torch.manual_seed(20261201)
    attr = make("batch_attr", True)
    write_all([plain, attr], OUT, 64, torch.__version__)


if __name__ == "__main__":
    main()
