#!/usr/bin/python3
"""gen_models.py: PyTorch reference fixtures for whole multi-task models
(src/models/model.c): shared_bottom, mmoe, ple with 1 and 2 CGC levels, esmm.

Run with Debian's interpreter (python3-torch), from any folder:

    /usr/bin/python3 tests/ref/gen_models.py

It REGENERATES tests/ref/fixtures/models/<fixture>.txt (shared_bottom, mmoe,
ple_l1, ple_l2, esmm); tests/ref/test_ref_models.c builds the same model
with config_parse + schema_create + model_create, overwrites every parameter
by name from the fixture, trains on the same 5 batches with our Adam and
compares. Deterministic for a given torch build (fixed seed); commit the
files after regenerating.

The networks, written from build_mlp / build_levels / build_gate and the
tensor names in model.c (weights [out, in], biases [out]):
  x[B, 8] = [emb.c0[c0] (3) | emb.c1[c1] (3) | n0 | n1]
  expert / bottom MLP: Linear + ReLU for every width of expert_dims [6, 5]
  tower.<task>: Linear + ReLU for every width of tower_dims [4], then
      Linear -> 1 logit
  gate: softmax(Linear(in -> K)); mixture out = sum_k g_k * e_k
  shared_bottom, esmm: bottom.fcL -> tower.<task> for both tasks
  mmoe: expert{k} (k < experts) all on x; gate.<task> over them
  ple, level l (input width 8 at level 0, 5 after):
      task experts level{l}.<task>.expert{j} (j < experts) read the task's
      input, shared experts level{l}.shared.expert{j} (j < shared_experts)
      read the shared input; level{l}.gate.<task> mixes the task's own
      experts THEN the shared ones, reading the task's input; when another
      level follows, level{l}.gate.shared mixes ALL experts of the level
      (task 0's, task 1's, then shared) reading the shared input. Level 0's
      inputs are all x; level l+1's task inputs are level l's task mixtures
      and its shared input is level l's shared mixture.
Tasks "a" and "b" (weights 1 and 0.5); loss = sum_t weight_t * loss_t with
loss_t the mean BCE-with-logits over rows whose label is not NaN; esmm's
task b loss is instead torch.nn.BCELoss(sum) of clamp(sigmoid(z_a) *
sigmoid(z_b), 1e-7, 1 - 1e-7) against (y_a AND y_b) over rows where that
label is known (y_a known, and y_b known when y_a = 1), divided by their
count, as losses() in model.c.

Training: torch.optim.Adam(lr=1e-2), default betas/eps, DENSE for every
parameter including the embedding tables. Ours updates a table's rows
lazily (only the rows a batch uses); every batch here uses every row of
both tables (each batch's ids contain a permutation of all ids), so the
lazy update is the dense one. Step k uses batch k; losses[k] is computed
before step k's update. Everything runs in float64 from float32 draws
(initial parameters, numerics), so the fixture holds the float64 answer
rounded to float32 once.

Fixture arrays: kind (enum model_kind: 2 shared_bottom, 3 mmoe, 4 ple,
5 esmm), levels, experts, shared_experts, vocab [2], emb_dim, expert_dims,
tower_dims, task_weights [2], lr, B, steps; init.<param> for every
parameter; c0_k, c1_k [B] ids, num_k [B, 2], y_k [B, 2] (NaN = missing) for
k < steps; losses [steps] (weighted total), task_losses [steps, 2];
final.<param> after the last update.
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from refio import F64, Fixture, rnd, write_all  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "models")

KIND_CODE = {"shared_bottom": 2, "mmoe": 3, "ple": 4, "esmm": 5}
VOCAB = [5, 4]
EMB_DIM = 3
NNUM = 2
EXPERT_DIMS = [6, 5]
TOWER_DIMS = [4]
TASKS = ["a", "b"]
TASK_WEIGHTS = [1.0, 0.5]
EXPERTS, SHARED_EXPERTS = 2, 1
B, STEPS, LR = 8, 5, 1e-2


# ---------------------------------------------------------------- the networks

class Net:
    """Parameters by model.c's names, in creation order, and the forward."""

    def __init__(self, kind, levels):
        self.kind, self.levels = kind, levels
        self.p = {}
        din = sum([EMB_DIM] * len(VOCAB)) + NNUM
        for i, v in enumerate(VOCAB):
            self.param("emb.c%d" % i, rnd(v, EMB_DIM, scale=0.5))
        if kind in ("shared_bottom", "esmm"):
            self.mlp("bottom.", din, EXPERT_DIMS)
            h = EXPERT_DIMS[-1]
        else:
            self.build_levels(din)
            h = EXPERT_DIMS[-1]
        for t in TASKS:
            self.mlp("tower.%s." % t, h, TOWER_DIMS + [1])

    def param(self, name, t):
        assert name not in self.p
        self.p[name] = t.clone().requires_grad_(True)

    def mlp(self, prefix, din, widths):
        dims = [din] + widths
        for l in range(len(widths)):
            fan_in = dims[l]
            self.param("%sfc%d.weight" % (prefix, l), rnd(dims[l + 1], fan_in, scale=(2.0 / fan_in) ** 0.5))
            self.param("%sfc%d.bias" % (prefix, l), rnd(dims[l + 1], scale=0.1))

    def gate(self, name, din, k):
        self.param(name + ".weight", rnd(k, din, scale=(2.0 / (din + k)) ** 0.5))
        self.param(name + ".bias", rnd(k, scale=0.1))

    def expert_names(self, l):
        """The level's experts in model.c's order: task 0's, task 1's, shared."""
        if self.kind == "mmoe":
            return ["expert%d." % k for k in range(EXPERTS)]
        names = []
        for t in TASKS:
            names += ["level%d.%s.expert%d." % (l, t, j) for j in range(EXPERTS)]
        names += ["level%d.shared.expert%d." % (l, j) for j in range(SHARED_EXPERTS)]
        return names

    def build_levels(self, din):
        nlev = 1 if self.kind == "mmoe" else self.levels
        nt = 0 if self.kind == "mmoe" else EXPERTS
        ns = EXPERTS if self.kind == "mmoe" else SHARED_EXPERTS
        self.nt, self.ns, self.nlev = nt, ns, nlev
        d = din
        for l in range(nlev):
            for name in self.expert_names(l):
                self.mlp(name, d, EXPERT_DIMS)
            for t in TASKS:
                self.gate("gate.%s" % t if self.kind == "mmoe" else "level%d.gate.%s" % (l, t), d, nt + ns)
            if l < nlev - 1:
                self.gate("level%d.gate.shared" % l, d, len(TASKS) * nt + ns)
            d = EXPERT_DIMS[-1]

    def run_mlp(self, prefix, x, nl, relu_last):
        for l in range(nl):
            x = F.linear(x, self.p["%sfc%d.weight" % (prefix, l)], self.p["%sfc%d.bias" % (prefix, l)])
            if l < nl - 1 or relu_last:
                x = torch.relu(x)
        return x

    def run_gate(self, name, x):
        return torch.softmax(F.linear(x, self.p[name + ".weight"], self.p[name + ".bias"]), dim=1)

    @staticmethod
    def mix(g, es):
        return sum(g[:, k:k + 1] * e for k, e in enumerate(es))

    def forward(self, c0, c1, num):
        x = torch.cat([F.embedding(c0, self.p["emb.c0"]), F.embedding(c1, self.p["emb.c1"]), num], dim=1)
        T = len(TASKS)
        if self.kind in ("shared_bottom", "esmm"):
            h = self.run_mlp("bottom.", x, len(EXPERT_DIMS), True)
            hs = [h] * T
        else:
            hs, sin = [x] * T, x
            for l in range(self.nlev):
                names = self.expert_names(l)
                outs = []
                for k, name in enumerate(names):
                    inp = hs[k // self.nt] if k < T * self.nt else sin
                    outs.append(self.run_mlp(name, inp, len(EXPERT_DIMS), True))
                new_hs = []
                for t, task in enumerate(TASKS):
                    gname = "gate.%s" % task if self.kind == "mmoe" else "level%d.gate.%s" % (l, task)
                    g = self.run_gate(gname, hs[t])
                    own = outs[t * self.nt:(t + 1) * self.nt] + outs[T * self.nt:]
                    new_hs.append(self.mix(g, own))
                if l < self.nlev - 1:
                    sin = self.mix(self.run_gate("level%d.gate.shared" % l, sin), outs)
                hs = new_hs
        return torch.stack([self.run_mlp("tower.%s." % t, hs[i], len(TOWER_DIMS) + 1, False).squeeze(1)
                            for i, t in enumerate(TASKS)], dim=1)

    def losses(self, z, y):
        out = []
        for t in range(len(TASKS)):
            if self.kind == "esmm" and t == 1:
                y0, y1 = y[:, 0], y[:, 1]
                lab = torch.where(y0 > 0.5, torch.where(torch.isnan(y1), y1, (y1 > 0.5).to(F64)),
                                  torch.zeros_like(y0))
                lab = torch.where(torch.isnan(y0), y0, lab)
                keep = ~torch.isnan(lab)
                p = torch.sigmoid(z[:, 0]) * torch.sigmoid(z[:, 1])
                pc = torch.clamp(p, 1e-7, 1 - 1e-7)
                out.append(F.binary_cross_entropy(pc[keep], lab[keep], reduction="sum") / keep.sum())
            else:
                keep = ~torch.isnan(y[:, t])
                out.append(F.binary_cross_entropy_with_logits(z[keep, t], y[keep, t], reduction="mean"))
        return out


def batch(kind):
    """Ids covering every row of both tables, numerics, labels with NaNs."""
    ids = []
    for v in VOCAB:
        c = torch.cat([torch.randperm(v), torch.randint(0, v, (B - v,))])
        ids.append(c[torch.randperm(B)])
    num = rnd(B, NNUM)
    y = (torch.rand(B, 2) < 0.5).to(F64)
    if kind == "esmm":
        # CVR is known on clicks only; one clicked row with an unknown conversion
        y[:, 0] = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0], dtype=F64)[torch.randperm(B)]
        y[y[:, 0] < 0.5, 1] = float("nan")
        clicked = (y[:, 0] > 0.5).nonzero().flatten()
        y[clicked[0], 1] = float("nan")
    else:
        y[0, 0] = 1.0  # both classes present in task a
        y[1, 0] = 0.0
        y[2, 1] = float("nan")
        y[5, 1] = float("nan")
    return ids[0], ids[1], num, y


def gen(kind, levels, name):
    net = Net(kind, levels)
    fx = Fixture(name, "%s (levels %d): see gen_models.py for the architecture and format" % (kind, levels))
    fx.add("kind", KIND_CODE[kind])
    fx.add("levels", levels)
    fx.add("experts", EXPERTS)
    fx.add("shared_experts", SHARED_EXPERTS)
    fx.add("vocab", torch.tensor(VOCAB))
    fx.add("emb_dim", EMB_DIM)
    fx.add("expert_dims", torch.tensor(EXPERT_DIMS))
    fx.add("tower_dims", torch.tensor(TOWER_DIMS))
    fx.add("task_weights", torch.tensor(TASK_WEIGHTS))
    fx.add("lr", LR)
    fx.add("B", B)
    fx.add("steps", STEPS)
    for n, p in net.p.items():
        fx.add("init." + n, p)
    opt = torch.optim.Adam(list(net.p.values()), lr=LR)
    losses, task_losses = [], []
    for k in range(STEPS):
        c0, c1, num, y = batch(kind)
        opt.zero_grad()
        ls = net.losses(net.forward(c0, c1, num), y)
        total = sum(w * l for w, l in zip(TASK_WEIGHTS, ls))
        total.backward()
        opt.step()
        losses.append(total.item())
        task_losses.append([l.item() for l in ls])
        fx.add("c0_%d" % k, c0)
        fx.add("c1_%d" % k, c1)
        fx.add("num_%d" % k, num)
        fx.add("y_%d" % k, y)
    fx.add("losses", torch.tensor(losses, dtype=F64))
    fx.add("task_losses", torch.tensor(task_losses, dtype=F64))
    for n, p in net.p.items():
        fx.add("final." + n, p)
    return fx


def main():
    torch.manual_seed(20240612)
    torch.set_default_dtype(F64)
    fixtures = [gen("shared_bottom", 1, "shared_bottom"), gen("mmoe", 1, "mmoe"), gen("ple", 1, "ple_l1"),
                gen("ple", 2, "ple_l2"), gen("esmm", 1, "esmm")]
    write_all(fixtures, OUT, 200, torch.__version__)


if __name__ == "__main__":
    main()
