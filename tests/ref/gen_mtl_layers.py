#!/usr/bin/python3
"""gen_mtl_layers.py: PyTorch reference fixtures for the multi-task layers in
src/nn/nn.h (the gated mixture of MMoE / PLE and ESMM's pCTCVR loss) and a
tiny MMoE trained with Adam.

Run with Debian's interpreter (python3-torch), from any folder:

    /usr/bin/python3 tests/ref/gen_mtl_layers.py

It REGENERATES tests/ref/fixtures/layers/{mixture,ctcvr,tiny_mmoe}.txt;
tests/ref/test_ref_mtl_layers.c compares our C code against them. Output is
deterministic for a given torch build (fixed seed); commit the files after
regenerating.

Same fixture format and conventions as gen_layers.py (the writer is
tests/ref/refio.py, shared by the gen_*.py scripts):
    polytask-ref v1 <name>          first line: magic, format version, name
    # ...                           comment lines
    <array> <ndim> <dim0> ... <dimN-1>
    <values, whitespace separated, %.9g so float32 round-trips exactly>
Inputs and parameters are drawn in float32 and the reference maths is done
in float64, rounded to float32 once when written.
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from refio import F64, Fixture, leaf, rnd, write_all  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "layers")
torch.manual_seed(20240612)


def as_f32_exact(t):
    """Round to float32 and back, so what the fixture stores is what was used."""
    return t.detach().to(torch.float32).to(F64)


# ---------------------------------------------------------------- layers

def gen_mixture():
    B, K, H = 5, 3, 4
    es = [leaf(rnd(B, H)) for _ in range(K)]
    g = leaf(as_f32_exact(torch.softmax(rnd(B, K, scale=1.5), dim=1)))
    out = (g.unsqueeze(2) * torch.stack(es, 1)).sum(1)
    dout = rnd(B, H)
    out.backward(dout)
    fx = Fixture("mixture",
                 "out[B,H] = (g.unsqueeze(2) * torch.stack([e0, e1, e2], 1)).sum(1);\n"
                 "g[B,K] = softmax of random gate logits (stored rounded to float32);\n"
                 "dout upstream; de_k = d out / d e_k, dg = d out / d g")
    fx.add("g", g)
    for k, e in enumerate(es):
        fx.add("e%d" % k, e)
    fx.add("out", out)
    fx.add("dout", dout)
    for k, e in enumerate(es):
        fx.add("de%d" % k, e.grad)
    fx.add("dg", g.grad)
    return fx


def gen_ctcvr():
    n = 16
    z1, z2 = rnd(n, scale=2.0), rnd(n, scale=2.0)
    nan = float("nan")
    y = torch.tensor([1, 0, 0, 1, nan, 0, 1, 0, nan, 1, 0, 1, 0, 1, 0, nan], dtype=F64)
    # Clamp active: p < 1e-7 (rows 10, 11), p > 1 - 1e-7 (rows 12, 13), and an
    # unlabelled row with huge logits (15) that must add nothing.
    z1[10], z2[10] = -25.0, 0.5
    z1[11], z2[11] = 1.0, -30.0
    z1[12], z2[12] = 20.0, 20.0
    z1[13], z2[13] = 40.0, 35.0
    z1[15], z2[15] = 90.0, -90.0
    scale = 0.375
    z1, z2 = leaf(z1), leaf(z2)
    p = torch.sigmoid(z1) * torch.sigmoid(z2)
    pc = torch.clamp(p, 1e-7, 1 - 1e-7)
    keep = ~torch.isnan(y)
    loss = torch.nn.BCELoss(reduction="sum")(pc[keep], y[keep])
    (loss * scale).backward()
    fx = Fixture("ctcvr",
                 "p = sigmoid(z_ctr) * sigmoid(z_cvr) (every row, unclipped);\n"
                 "loss = BCELoss(reduction='sum')(torch.clamp(p, 1e-7, 1-1e-7)[keep], y[keep]),\n"
                 "keep = rows with non-NaN y; dz_* = d(scale * loss)/dz_* (0 on NaN rows and\n"
                 "where the clamp is active: rows 10-13; row 15 unlabelled with huge logits)")
    for nm, t in [("z_ctr", z1), ("z_cvr", z2), ("y", y), ("scale", scale), ("p", p),
                  ("loss", loss), ("count", int(keep.sum())), ("dz_ctr", z1.grad),
                  ("dz_cvr", z2.grad)]:
        fx.add(nm, t)
    return fx


# ---------------------------------------------------------------- tiny MMoE

def linear64(i, o):
    """torch's default Linear init drawn in float32, used in float64."""
    lin = torch.nn.Linear(i, o, dtype=torch.float32)
    lin.weight = torch.nn.Parameter(lin.weight.detach().to(F64))
    lin.bias = torch.nn.Parameter(lin.bias.detach().to(F64))
    return lin


def gen_tiny_mmoe():
    B, I, E, HE, T, HT, STEPS, lr = 16, 6, 3, 8, 2, 4, 5, 1e-2
    experts = [linear64(I, HE) for _ in range(E)]
    gates = [linear64(I, E) for _ in range(T)]
    towers = [linear64(HE, HT) for _ in range(T)]
    outs = [linear64(HT, 1) for _ in range(T)]
    params = []
    for k, m in enumerate(experts):
        params += [("e%d_W" % k, m.weight), ("e%d_b" % k, m.bias)]
    for t in range(T):
        for pre, m in (("g", gates[t]), ("t", towers[t]), ("o", outs[t])):
            params += [("%s%d_W" % (pre, t), m.weight), ("%s%d_b" % (pre, t), m.bias)]
    fx = Fixture("tiny_mmoe",
                 "MMoE: x[16,6] -> 3 experts Linear(6,8)+ReLU; per task t (2): gate Linear(6,3)\n"
                 "+ softmax, mixture (g.unsqueeze(2) * stack(experts, 1)).sum(1), tower\n"
                 "Linear(8,4)+ReLU, out Linear(4,1); loss = sum over tasks of\n"
                 "BCE-with-logits mean over the rows whose y[:,t] is not NaN (task 1 has NaNs).\n"
                 "torch.optim.Adam(lr=1e-2) over all parameters. Step k uses batch k (x_k, y_k);\n"
                 "losses[k] is computed before step k's update; *_final = after 5 updates.\n"
                 "Parameter names: e{k}_W/b experts, g{t} gates, t{t} towers, o{t} outputs.")
    fx.add("lr", lr)
    for nm, p in params:
        fx.add(nm, p)
    opt = torch.optim.Adam([p for _, p in params], lr=lr)
    losses = []
    for k in range(STEPS):
        x = rnd(B, I)
        y = (torch.rand(B, T) < 0.4).to(F64)
        y[torch.rand(B) < 0.25, 1] = float("nan")  # task 1 unobserved on some rows
        opt.zero_grad()
        es = torch.stack([torch.relu(m(x)) for m in experts], 1)  # [B, E, HE]
        loss = 0.0
        for t in range(T):
            g = torch.softmax(gates[t](x), dim=1)
            mix = (g.unsqueeze(2) * es).sum(1)
            logit = outs[t](torch.relu(towers[t](mix))).squeeze(1)
            keep = ~torch.isnan(y[:, t])
            loss = loss + F.binary_cross_entropy_with_logits(logit[keep], y[keep, t],
                                                             reduction="mean")
        loss.backward()
        opt.step()
        losses.append(loss.item())
        fx.add("x_%d" % k, x)
        fx.add("y_%d" % k, y)
    fx.add("losses", torch.tensor(losses, dtype=F64))
    for nm, p in params:
        fx.add(nm + "_final", p)
    return fx


def main():
    torch.set_default_dtype(F64)
    fixtures = [gen_mixture(), gen_ctcvr(), gen_tiny_mmoe()]
    write_all(fixtures, OUT, 100, torch.__version__)


if __name__ == "__main__":
    main()
