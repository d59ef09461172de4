#!/usr/bin/python3
"""gen_layers.py: PyTorch reference fixtures for the layers in src/nn/nn.h,
the optimisers in src/train/optim.h and a tiny embedding + MLP model.

Run with Debian's interpreter (python3-torch, python3-numpy), from any folder:

    /usr/bin/python3 tests/ref/gen_layers.py      # or: make ref

It REGENERATES the committed fixtures under tests/ref/fixtures/layers/
(one file per layer / optimiser, plus tiny_model.txt); tests/ref/
test_ref_layers.c compares our C code against them. Output is deterministic
for a given torch build (fixed seed); commit the files after regenerating.

Fixture format (written by tests/ref/refio.py, parsed by tests/ref/fixture.h):
    polytask-ref v1 <name>          first line: magic, format version, name
    # ...                           comment lines
    <array> <ndim> <dim0> ... <dimN-1>
    <values, whitespace separated, %.9g so float32 round-trips exactly>
Scalars have ndim 0 and one value. Integer arrays (ids, offsets, rows) are
written the same way (exact in float32). NaN is written "nan".

Inputs and parameters are drawn in float32; the reference maths for the
single layers and optimisers is done in float64 and rounded to float32 once,
so the fixture holds the correctly rounded answer for those inputs. The tiny
model is trained in float64 too (same reason: Adam normalises gradients, so a
float64 reference is the stable target for our float32 code).
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from refio import F64, Fixture, leaf, rnd, write_all  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "layers")
torch.manual_seed(20240611)


# ---------------------------------------------------------------- layers

def gen_linear():
    B, I, O = 4, 5, 3
    x, W, b = leaf(rnd(B, I)), leaf(rnd(O, I, scale=0.5)), leaf(rnd(O, scale=0.1))
    y = x @ W.t() + b
    dy = rnd(B, O)
    y.backward(dy)
    fx = Fixture("linear", "y[B,O] = x[B,I] . W[O,I]^T + b[O]; dy upstream; dx, dW, db")
    for n, t in [("x", x), ("W", W), ("b", b), ("y", y), ("dy", dy),
                 ("dx", x.grad), ("dW", W.grad), ("db", b.grad)]:
        fx.add(n, t)
    return fx


def gen_embedding():
    V, D = 6, 3
    table = leaf(rnd(V, D))
    ids = torch.tensor([2, 0, 2, 5, 1, 2, 5])  # repeats; rows 3, 4 untouched
    out = F.embedding(ids, table)
    dout = rnd(len(ids), D)
    out.backward(dout)
    fx = Fixture("embedding", "out[b,:] = table[ids[b],:]; dtable from dout (repeated ids accumulate)")
    for n, t in [("table", table), ("ids", ids), ("out", out), ("dout", dout),
                 ("dtable", table.grad)]:
        fx.add(n, t)
    return fx


def gen_embedding_bag():
    V, D = 7, 3
    table = rnd(V, D)
    ids = torch.tensor([1, 4, 4, 0, 6, 2, 3, 3, 3, 5])
    # bags: [1,4] [] [4,0,6] [2] [3,3,3,5] []  (empty bags in the middle and at the end)
    starts = torch.tensor([0, 2, 2, 5, 6, 10])
    off = torch.cat([starts, torch.tensor([len(ids)])])  # ours: B+1 offsets
    B = len(starts)
    dout = rnd(B, D)
    fx = Fixture("embedding_bag",
                 "bags ids[off[b]:off[b+1]] (off has B+1 entries); bags 1 and 5 empty\n"
                 "torch.nn.functional.embedding_bag(ids, table, starts, mode) for sum, mean")
    fx.add("table", table)
    fx.add("ids", ids)
    fx.add("off", off)
    fx.add("dout", dout)
    for mode in ("sum", "mean"):
        t = leaf(table)
        out = F.embedding_bag(ids, t, starts, mode=mode)
        out.backward(dout)
        fx.add("out_" + mode, out)
        fx.add("dtable_" + mode, t.grad)
    return fx


def gen_relu():
    x = rnd(3, 7)
    x[0, 0] = 0.0  # torch: gradient 0 at x == 0, as ours (y > 0)
    x[2, 3] = 0.0
    x = leaf(x)
    y = F.relu(x)
    dy = rnd(3, 7)
    y.backward(dy)
    fx = Fixture("relu", "y = max(x, 0); dx = dy * (y > 0); x has exact zeros")
    for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad)]:
        fx.add(n, t)
    return fx


def gen_dropout():
    N, p = 40, 0.25
    x = leaf(rnd(N))
    keep = torch.rand(N) >= p
    mask = keep.to(F64) / (1.0 - p)  # inverted dropout: 0 or 1/(1-p)
    y = x * mask
    dy = rnd(N)
    y.backward(dy)
    fx = Fixture("dropout", "fixed mask (0 or 1/(1-p)); y = x * mask; dx = dy * mask")
    for n, t in [("p", p), ("x", x), ("mask", mask), ("y", y), ("dy", dy), ("dx", x.grad)]:
        fx.add(n, t)
    return fx


def gen_concat():
    B, widths = 4, [2, 3, 1]
    xs = [leaf(rnd(B, w)) for w in widths]
    out = torch.cat(xs, dim=1)
    dout = rnd(B, sum(widths))
    out.backward(dout)
    fx = Fixture("concat", "out[B,6] = [x0[B,2] | x1[B,3] | x2[B,1]]")
    fx.add("widths", torch.tensor(widths))
    for i, x in enumerate(xs):
        fx.add("x%d" % i, x)
    fx.add("out", out)
    fx.add("dout", dout)
    for i, x in enumerate(xs):
        fx.add("dx%d" % i, x.grad)
    return fx


def gen_softmax():
    B, C = 4, 5
    x = rnd(B, C, scale=2.0)
    x[2] = torch.tensor([100.0, 101.0, 99.5, -50.0, 100.25], dtype=F64)  # stability
    x[3] = torch.tensor([-80.0, -81.0, -79.0, -80.5, -120.0], dtype=F64)
    x = leaf(x)
    y = torch.softmax(x, dim=1)
    dy = rnd(B, C)
    y.backward(dy)
    fx = Fixture("softmax", "row softmax; rows 2, 3 have large |x|")
    for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad)]:
        fx.add(n, t)
    return fx


def gen_bce():
    logit = rnd(12, scale=2.0)
    logit[3], logit[7], logit[9] = 40.0, -60.0, 120.0  # stability for large |logit|
    y = torch.tensor([1, 0, 1, 0, 1, float("nan"), 0, 1, float("nan"), 0, 0.25, float("nan")],
                     dtype=F64)
    scale = 0.375
    logit = leaf(logit)
    keep = ~torch.isnan(y)
    loss = F.binary_cross_entropy_with_logits(logit[keep], y[keep], reduction="sum")
    (loss * scale).backward()
    p = torch.sigmoid(logit)
    fx = Fixture("bce",
                 "binary_cross_entropy_with_logits(reduction='sum') over rows with non-NaN y;\n"
                 "p = sigmoid(logit) for every row; dlogit = scale * d loss (0 on NaN rows)")
    for n, t in [("logit", logit), ("y", y), ("scale", scale), ("p", p), ("loss", loss),
                 ("count", int(keep.sum())), ("dlogit", logit.grad)]:
        fx.add(n, t)
    return fx


def gen_mse():
    pred = rnd(10)
    y = rnd(10)
    y[2] = float("nan")
    y[6] = float("nan")
    scale = 0.5
    pred = leaf(pred)
    keep = ~torch.isnan(y)
    loss = F.mse_loss(pred[keep], y[keep], reduction="sum")
    (loss * scale).backward()
    fx = Fixture("mse", "mse_loss(reduction='sum') over rows with non-NaN y; dpred = scale * d loss")
    for n, t in [("pred", pred), ("y", y), ("scale", scale), ("loss", loss),
                 ("count", int(keep.sum())), ("dpred", pred.grad)]:
        fx.add(n, t)
    return fx


# ---------------------------------------------------------------- optimisers

def gen_optim(name, make, comment, lr, l2=0.0, moments=()):
    """Dense optimiser: w0, grads g1..g3, weights w1..w3 after each step and,
    if named, the optimiser state after each step (m, v)."""
    w = torch.nn.Parameter(rnd(3, 4))
    fx = Fixture(name, comment + "\nw_k = weights after step k (1-based) with gradient g_k")
    fx.add("lr", lr)
    fx.add("l2", l2)
    opt = make([w])
    d = opt.defaults
    if "betas" in d:
        fx.add("beta1", d["betas"][0])
        fx.add("beta2", d["betas"][1])
    fx.add("eps", d.get("eps", 0.0))
    fx.add("w0", w)
    for k in range(1, 4):
        g = rnd(3, 4)
        w.grad = g.clone()
        opt.step()
        fx.add("g%d" % k, g)
        fx.add("w%d" % k, w)
        st = opt.state[w]
        for ours, theirs in moments:
            fx.add("%s%d" % (ours, k), st[theirs])
    return fx


def gen_sparse_adam():
    V, D, lr = 6, 3, 1e-2
    w = torch.nn.Parameter(rnd(V, D))
    opt = torch.optim.SparseAdam([w], lr=lr)
    d = opt.defaults
    fx = Fixture("optim_sparse_adam",
                 "torch.optim.SparseAdam on a [6,3] table; step k touches rows_k only\n"
                 "(every step touches >= 1 row, so torch's per-parameter step == global step);\n"
                 "g_k is the dense table gradient (zero outside rows_k); m_k, v_k: moments after\n"
                 "step k (untouched rows keep theirs). Row 4 is never touched.")
    fx.add("lr", lr)
    fx.add("beta1", d["betas"][0])
    fx.add("beta2", d["betas"][1])
    fx.add("eps", d["eps"])
    fx.add("w0", w)
    for k, rows in enumerate([[0, 2], [2, 5], [1, 2, 3]], start=1):
        r = torch.tensor(rows)
        vals = rnd(len(rows), D)
        w.grad = torch.sparse_coo_tensor(r.unsqueeze(0), vals, (V, D))
        opt.step()
        dense = torch.zeros(V, D, dtype=F64)
        dense[r] = vals
        st = opt.state[w]
        fx.add("rows%d" % k, r)
        fx.add("g%d" % k, dense)
        fx.add("w%d" % k, w)
        fx.add("m%d" % k, st["exp_avg"])
        fx.add("v%d" % k, st["exp_avg_sq"])
    return fx


# ---------------------------------------------------------------- tiny model

def gen_tiny_model():
    B, D, VA, VB, NUM, H, STEPS, lr = 16, 4, 7, 5, 3, 8, 5, 1e-2
    embA = torch.nn.Parameter(rnd(VA, D, scale=0.1))
    embB = torch.nn.Parameter(rnd(VB, D, scale=0.1))
    l1 = torch.nn.Linear(2 * D + NUM, H, dtype=torch.float32)
    l2 = torch.nn.Linear(H, 1, dtype=torch.float32)
    with torch.no_grad():  # torch's default init drawn in float32, used in float64
        for lin in (l1, l2):
            lin.weight = torch.nn.Parameter(lin.weight.detach().to(F64))
            lin.bias = torch.nn.Parameter(lin.bias.detach().to(F64))
    params = [("embA", embA), ("embB", embB), ("W1", l1.weight), ("b1", l1.bias),
              ("W2", l2.weight), ("b2", l2.bias)]
    fx = Fixture("tiny_model",
                 "x[16,11] = [embA[ida] (4) | embB[idb] (4) | num (3)] -> Linear(11,8) -> ReLU\n"
                 "-> Linear(8,1) -> BCE-with-logits mean over 16 rows; torch.optim.Adam(lr=1e-2),\n"
                 "dense for every parameter (untouched embedding rows' moments decay too).\n"
                 "Step k uses batch k (ida_k, idb_k, num_k, y_k); loss[k] is computed before\n"
                 "step k's update; *_final = parameters after the 5 updates.")
    fx.add("lr", lr)
    for n, p in params:
        fx.add(n, p)
    opt = torch.optim.Adam([p for _, p in params], lr=lr)
    losses = []
    for k in range(STEPS):
        ida = torch.randint(0, VA, (B,))
        idb = torch.randint(0, VB, (B,))
        num = rnd(B, NUM)
        y = (torch.rand(B) < 0.4).to(F64)
        opt.zero_grad()
        x = torch.cat([F.embedding(ida, embA), F.embedding(idb, embB), num], dim=1)
        logit = l2(torch.relu(l1(x))).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logit, y, reduction="mean")
        loss.backward()
        opt.step()
        losses.append(loss.item())
        fx.add("ida_%d" % k, ida)
        fx.add("idb_%d" % k, idb)
        fx.add("num_%d" % k, num)
        fx.add("y_%d" % k, y)
    fx.add("losses", torch.tensor(losses, dtype=F64))
    for n, p in params:
        fx.add(n + "_final", p)
    return fx


def main():
    torch.set_default_dtype(torch.float64)
    fixtures = [
        gen_linear(), gen_embedding(), gen_embedding_bag(), gen_relu(), gen_dropout(),
        gen_concat(), gen_softmax(), gen_bce(), gen_mse(),
        gen_optim("optim_sgd", lambda p: torch.optim.SGD(p, lr=0.1),
                  "torch.optim.SGD(lr=0.1): w -= lr * g", 0.1),
        gen_optim("optim_sgd_l2", lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05),
                  "torch.optim.SGD(lr=0.1, weight_decay=0.05) == our l2 added to the gradient",
                  0.1, 0.05),
        gen_optim("optim_adam", lambda p: torch.optim.Adam(p, lr=1e-2),
                  "torch.optim.Adam(lr=1e-2), default betas/eps; m_k, v_k = exp_avg, exp_avg_sq",
                  1e-2, 0.0, [("m", "exp_avg"), ("v", "exp_avg_sq")]),
        gen_optim("optim_adam_l2", lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
                  "torch.optim.Adam(lr=1e-2, weight_decay=0.1) == our l2 added to the gradient",
                  1e-2, 0.1, [("m", "exp_avg"), ("v", "exp_avg_sq")]),
        gen_optim("optim_adagrad", lambda p: torch.optim.Adagrad(p, lr=0.1),
                  "torch.optim.Adagrad(lr=0.1): eps 1e-10, initial accumulator 0; v_k = sum",
                  0.1, 0.0, [("v", "sum")]),
        gen_optim("optim_adagrad_l2", lambda p: torch.optim.Adagrad(p, lr=0.1, weight_decay=0.05),
                  "torch.optim.Adagrad(lr=0.1, weight_decay=0.05) == our l2 added to the gradient",
                  0.1, 0.05, [("v", "sum")]),
        gen_sparse_adam(),
        gen_tiny_model(),
    ]
    write_all(fixtures, OUT, 300, torch.__version__)


if __name__ == "__main__":
    main()
