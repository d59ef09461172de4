"""refio.py: what the tests/ref/gen_*.py scripts share: the writer of the
"polytask-ref v1" fixture format (parsed by tests/ref/fixture.h) and the
float32 draw / autograd leaf helpers.

Not named gen_*.py on purpose: `make ref` runs every tests/ref/gen_*.py.
The scripts import it after putting their own folder on sys.path, so they
still run from any folder as /usr/bin/python3 tests/ref/gen_x.py.

Format:
    polytask-ref v1 <name>          first line: magic, format version, name
    # ...                           comment lines
    <array> <ndim> <dim0> ... <dimN-1>
    <values, whitespace separated, %.9g so float32 round-trips exactly>
Scalars have ndim 0 and one value; NaN is written "nan". Values are rounded
to float32 once, when added.
"""
import os
import sys

import torch

VERSION = "v1"
F64 = torch.float64


def rnd(*shape, scale=1.0):
    """float32 normal draws (global torch generator), returned as float64
    (exactly representable)."""
    return (torch.randn(*shape, dtype=torch.float32) * scale).to(F64)


def f32(t):
    return t.detach().to(torch.float32)


def leaf(t):
    return t.clone().requires_grad_(True)


def fmt(v):
    if v != v:
        return "nan"
    return "%.9g" % v


class Fixture:
    def __init__(self, name, comment):
        self.name = name
        self.lines = ["polytask-ref %s %s" % (VERSION, name)]
        for c in comment.strip().splitlines():
            self.lines.append("# " + c.strip())

    def add(self, name, t):
        if not isinstance(t, torch.Tensor):
            t = torch.tensor(t)
        t = f32(t)
        dims = list(t.shape)
        self.lines.append(" ".join([name, str(len(dims))] + [str(d) for d in dims]))
        flat = t.reshape(-1).tolist()
        row = dims[-1] if dims and dims[-1] > 0 else 1  # one line per row
        for i in range(0, len(flat), row):
            self.lines.append(" ".join(fmt(v) for v in flat[i:i + row]))

    def write(self, out):
        """Writes <out>/<name>.txt (creating out) and returns its path."""
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, self.name + ".txt")
        with open(path, "w") as f:
            f.write("\n".join(self.lines) + "\n")
        return path


def write_all(fixtures, out, limit_kib, version):
    """Writes every fixture to out, prints their paths (relative to the repo)
    and the total, and stops with an error past limit_kib: fixtures are
    committed, so they must stay small."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    total = 0
    for fx in fixtures:
        path = fx.write(out)
        total += os.path.getsize(path)
        print("wrote", os.path.relpath(path, root))
    print("total %d bytes (torch %s)" % (total, version))
    if total > limit_kib * 1024:
        sys.exit("fixtures too large")
