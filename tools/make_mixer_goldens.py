#!/usr/bin/env python3
"""PyTorch goldens of the cross-batch mixers (forward and gradients), an independent reference for
include/crossbatch/mix/ and train/mixer_backward.hpp.

The modules below are written from the reference description (../shared/reference/
cross_batch_generation.md, the cross-batch part of experiment_details.md, and the public reference
module it describes) in plain torch.nn, float64, not from the C++ code:

  CrossBatchAttention (B samples, hidden C, H heads of D = C / H):
    q, k, v = W_q h, W_k h, W_v h (no bias), split into H heads
    s = q k^T / (sqrt(D) tau), self masked with -inf before the softmax, p = softmax(s)
    A = W_o (p v)                                       (W_o: no bias)
  CrossBatchEmbeddingMixer:
    n = normalize(W_s h) (F.normalize, eps 1e-12), s = n n^T / tau, self masked, p = softmax(s)
    A = p (W_v h)                                       (no output projection)
  Combination of A with the sample's own state H:
    alpha: (1 - alpha) H + alpha A                      (the first reference version; alpha raw)
    scale: H + sigmoid(s) A                             (the later version; s a raw parameter)
    gate:  H + g * A, g = sigmoid(W2 GELU(W1 [LN_h(H); LN_a(A); LN_h(H) * LN_a(A)] + b1) + b2)
           (nn.LayerNorm eps 1e-5 as float32, exact-erf nn.GELU, W1: 3C -> G, W2: G -> C)
  A batch of one comes back unchanged (the reference returns hidden_states for batch_size 1).

Groups: the reference mixes whole batches, and its batches hold the questions of one context. A
group id here names such a batch: the golden runs the reference module separately on the samples
of each group (a group of one is a batch of one, unchanged), and a sample with a negative group id
(a retired sequence) is passed through untouched. Autograd then gives dL/d(every parameter) and
dL/d(hidden) for the loss L = sum(dout * out) with a random dout.

Where the C++ documents other semantics, the goldens follow the C++ (config.hpp, weights.hpp):
  - scale mode: the C++ parameter `scale` is the coefficient itself, not its logit. The golden
    stores mixer.scale = sigmoid(s) and grad.scale = dL/d sigmoid(s) = (dL/ds) / (sig (1 - sig));
    the reference's own dL/ds is in the manifest (`reference_grad_scale_logit`).
  - the embedding mixer in alpha mode: the reference's embedding mixer has only scale and gate;
    the C++ offers the first version's alpha combination for it too, which the golden applies to
    the embedding cross term.
  - gate: experiment_details.md summarises the gate input as [H; A] (2C -> C/4); the public
    reference module (and the C++) uses [LN(H); LN(A); LN(H) * LN(A)] (3C -> G). The golden follows
    the latter, with G = C / 4 or the case's gate_hidden.
  - the README's pseudo-code zeroes A[i, i] after the softmax; the reference module masks the
    diagonal with -inf before it (the row renormalises over the others), and so do the C++ and the
    golden.
  - the training code's frozen final norm (and the fixed double-norm bug of mix_layer -1) sits
    outside the mixer and is not part of these goldens.
Self-checks (each must hold for the files to be written): the per-group forward equals one masked
pass over the whole batch (-inf outside the group, nan_to_num), and a lonely or retired sample's
output equals its input exactly.

Files, per case in <out>/<case>/ (float64 unless said):
  checkpoint.json               a crossbatch checkpoint (method "mixer") with the mixer config:
                                load_checkpoint(dir) reads the case as float32 weights
  mixer.<parameter>.npy         the weights under the C++ names (proj.weight = [W_q; W_k; W_v] or
                                [W_s; W_v], out_proj.weight, alpha | scale, gate.ln_h.weight, ...,
                                gate.fc1.weight, gate.fc1.bias, gate.fc2.weight, gate.fc2.bias)
  hidden.npy (B, C), groups.npy (B,) int32, out.npy (B, C), dout.npy (B, C)
  cross.npy (B, C)              the cross term A (0 for samples with no partner)
  probs.npy (H, B, B)           the softmax weights (0 outside a sample's group and on the diagonal)
  grad.<parameter>.npy          dL/d(parameter), C++ names and shapes
  grad.hidden.npy (B, C)        dL/d(hidden)
<out>/manifest.json lists the cases, configs, files, shapes, seeds, torch version and self-checks.

    make_mixer_goldens.py [--out tests/data/goldens/mixer] [--cases NAME ...]

Needs torch (CPU is enough) and numpy.
"""
import argparse
import json
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

REPO = pathlib.Path(__file__).resolve().parent.parent
# Two groups of three, a retired sample (-1) and a sample alone in its group (2).
GROUPS = [0, 1, 0, -1, 1, 0, 1, 2]

# Temperatures and head dims are chosen so that the score scale 1 / (sqrt(D) tau) (1 / tau for the
# embedding mixer) is exact in float32, which the C++ keeps it in, and the LayerNorm eps is 1e-5
# rounded to float32 (the C++ config holds a float; nn.LayerNorm's 1e-5 differs by 2.5e-14, which
# moves the float64 gate gradients by up to 6e-13): the float64 comparison then sees only
# arithmetic error.
LN_EPS = float(np.float32(1e-5))
CASES = {
    "attention_alpha": dict(kind="attention", combine="alpha", C=16, heads=4, tau=2.0, seed=101),
    "attention_scale": dict(kind="attention", combine="scale", C=16, heads=4, tau=2.0, seed=102),
    "attention_gate": dict(kind="attention", combine="gate", C=16, heads=4, tau=2.0, seed=103),
    "attention_gate_h2": dict(kind="attention", combine="gate", C=32, heads=2, tau=2.0, gate=6,
                              seed=104),
    "embedding_alpha": dict(kind="embedding", combine="alpha", C=16, tau=0.5, seed=201),
    "embedding_scale": dict(kind="embedding", combine="scale", C=16, tau=0.5, seed=202),
    "embedding_gate": dict(kind="embedding", combine="gate", C=16, tau=0.5, gate=6, seed=203),
}


class QuestionAwareGate(nn.Module):
    """g = sigmoid(MLP([LN(h); LN(a); LN(h) * LN(a)])), per channel."""

    def __init__(self, hidden, gate_hidden):
        super().__init__()
        self.ln_h = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ln_a = nn.LayerNorm(hidden, eps=LN_EPS)
        self.net = nn.Sequential(nn.Linear(3 * hidden, gate_hidden), nn.GELU(),
                                 nn.Linear(gate_hidden, hidden), nn.Sigmoid())

    def forward(self, h, a):
        lh, la = self.ln_h(h), self.ln_a(a)
        return self.net(torch.cat([lh, la, lh * la], dim=-1))


class Combine(nn.Module):
    """How the cross term a enters the output of a sample whose own state is h."""

    def __init__(self, mode, hidden, gate_hidden):
        super().__init__()
        self.mode = mode
        if mode == "alpha":
            self.alpha = nn.Parameter(torch.tensor(0.5))
        elif mode == "scale":
            self.scale = nn.Parameter(torch.tensor(-3.0))  # logit: sigmoid(-3) = 0.047
        else:
            self.gate = QuestionAwareGate(hidden, gate_hidden)

    def forward(self, h, a):
        if self.mode == "alpha":
            return (1 - self.alpha) * h + self.alpha * a
        if self.mode == "scale":
            return h + torch.sigmoid(self.scale) * a
        return h + self.gate(h, a) * a


class CrossBatchAttention(nn.Module):
    def __init__(self, hidden, heads, combine, temperature, gate_hidden):
        super().__init__()
        assert hidden % heads == 0
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.temperature = temperature
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, hidden, bias=False)
        self.combine = Combine(combine, hidden, gate_hidden)

    def scores(self, h):  # (n, C) -> q k^T scaled (H, n, n), values (H, n, D)
        n = h.shape[0]
        q = self.q_proj(h).view(n, self.heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(h).view(n, self.heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(h).view(n, self.heads, self.head_dim).transpose(0, 1)
        return q @ k.transpose(1, 2) / (self.head_dim ** 0.5 * self.temperature), v

    def cross(self, p, v):  # (H, n, n), (H, n, D) -> (n, C)
        x = (p @ v).transpose(0, 1).reshape(p.shape[1], self.hidden)
        return self.out_proj(x)


class CrossBatchEmbeddingMixer(nn.Module):
    heads = 1

    def __init__(self, hidden, combine, temperature, gate_hidden):
        super().__init__()
        self.temperature = temperature
        self.similarity_proj = nn.Linear(hidden, hidden, bias=False)
        self.value_proj = nn.Linear(hidden, hidden, bias=False)
        self.combine = Combine(combine, hidden, gate_hidden)

    def scores(self, h):
        n = F.normalize(self.similarity_proj(h), p=2, dim=-1)
        return (n @ n.t() / self.temperature).unsqueeze(0), self.value_proj(h).unsqueeze(0)

    def cross(self, p, v):
        return (p @ v)[0]


def mix_batch(m, h):
    """The reference forward on one batch (one group): (out, cross term, probs)."""
    n = h.shape[0]
    if n == 1:
        return h, torch.zeros_like(h), torch.zeros(m.heads, 1, 1)
    s, v = m.scores(h)
    eye = torch.eye(n, dtype=torch.bool)
    p = F.softmax(s.masked_fill(eye.unsqueeze(0), float("-inf")), dim=-1)
    a = m.cross(p, v)
    return m.combine(h, a), a, p


def mix_grouped(m, h, groups):
    """Each group mixed on its own; retired samples (group < 0) unchanged."""
    B, C = h.shape
    rows = list(h.unbind(0))
    cross = torch.zeros(B, C)
    probs = torch.zeros(m.heads, B, B)
    for g in sorted({x for x in groups if x >= 0}):
        idx = [i for i, x in enumerate(groups) if x == g]
        out, a, p = mix_batch(m, h[idx])
        for r, i in enumerate(idx):
            rows[i] = out[r]
            cross[i] = a[r].detach()
            for r2, j in enumerate(idx):
                probs[:, i, j] = p[:, r, r2].detach()
    return torch.stack(rows), cross, probs


def mix_masked(m, h, groups):
    """Self-check: one pass over the whole batch with a group mask (forward only)."""
    B = h.shape[0]
    g = torch.tensor(groups)
    allowed = (g[:, None] == g[None, :]) & (g[:, None] >= 0) & ~torch.eye(B, dtype=torch.bool)
    s, v = m.scores(h)
    p = torch.nan_to_num(F.softmax(s.masked_fill(~allowed.unsqueeze(0), float("-inf")), dim=-1),
                         nan=0.0)
    out = m.combine(h, m.cross(p, v))
    alone = ~allowed.any(dim=1)
    return torch.where(alone[:, None], h, out)


def build(case):
    gen = torch.Generator().manual_seed(case["seed"])
    C = case["C"]
    G = case.get("gate", C // 4)
    if case["kind"] == "attention":
        m = CrossBatchAttention(C, case["heads"], case["combine"], case["tau"], G)
    else:
        m = CrossBatchEmbeddingMixer(C, case["combine"], case["tau"], G)

    def normal(t, std):
        with torch.no_grad():
            t.copy_(torch.randn(t.shape, generator=gen) * std)

    def uniform(t, lo, hi):
        with torch.no_grad():
            t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=gen))

    # Every parameter random and away from its "switched off" initial value, so that every term
    # of the forward and backward pass shows.
    proj_std = 1.4 / math.sqrt(C)
    for name, p in m.named_parameters():
        if name.endswith("_proj.weight"):
            normal(p, proj_std)
        elif name == "combine.alpha":
            uniform(p, 0.4, 0.7)
        elif name == "combine.scale":
            uniform(p, -0.5, 0.8)
        elif name.startswith("combine.gate.ln_") and name.endswith("weight"):
            uniform(p, 0.7, 1.3)
        elif name.startswith("combine.gate.ln_"):
            uniform(p, -0.2, 0.2)
        elif name.endswith("weight"):
            normal(p, 1.0 / math.sqrt(p.shape[1]))
        else:
            uniform(p, -0.5, 0.5)
    B = len(GROUPS)
    h = torch.randn(B, C, generator=gen) * 1.5
    dout = torch.randn(B, C, generator=gen)
    return m, G, h, dout


def cpp_parameters(m, kind, combine):
    """(C++ name, tensor or gradient getter) pairs in mixer_weights::shapes() order."""

    def cat(*ps):
        return lambda get: torch.cat([get(p) for p in ps], dim=0)

    def one(p, shape=None):
        return lambda get: get(p).reshape(shape) if shape else get(p)

    if kind == "attention":
        out = [("proj.weight", cat(m.q_proj.weight, m.k_proj.weight, m.v_proj.weight)),
               ("out_proj.weight", one(m.out_proj.weight))]
    else:
        out = [("proj.weight", cat(m.similarity_proj.weight, m.value_proj.weight))]
    c = m.combine
    if combine == "alpha":
        out.append(("alpha", one(c.alpha, (1,))))
    elif combine == "scale":
        out.append(("scale", None))  # special: sigmoid of the logit, see the docstring
    else:
        gt = c.gate
        out += [("gate.ln_h.weight", one(gt.ln_h.weight)), ("gate.ln_h.bias", one(gt.ln_h.bias)),
                ("gate.ln_a.weight", one(gt.ln_a.weight)), ("gate.ln_a.bias", one(gt.ln_a.bias)),
                ("gate.fc1.weight", one(gt.net[0].weight)), ("gate.fc1.bias", one(gt.net[0].bias)),
                ("gate.fc2.weight", one(gt.net[2].weight)), ("gate.fc2.bias", one(gt.net[2].bias))]
    return out


def save(path, array, files, key, root):
    np.save(path, array)
    files[key] = {"file": str(path.relative_to(root)), "dtype": str(array.dtype),
                  "shape": list(array.shape)}


def make_case(name, case, out_dir, root):
    m, G, h, dout = build(case)
    C, kind, combine = case["C"], case["kind"], case["combine"]
    heads = case.get("heads", 1)
    h = h.clone().requires_grad_(True)
    out, cross, probs = mix_grouped(m, h, GROUPS)
    (out * dout).sum().backward()

    # Self-checks.
    with torch.no_grad():
        masked = mix_masked(m, h, GROUPS)
    checks = {"grouped_vs_masked_max_abs": float((masked - out.detach()).abs().max())}
    passthrough = [i for i, g in enumerate(GROUPS) if g < 0 or GROUPS.count(g) == 1]
    checks["lonely_and_retired_exact"] = bool(torch.equal(out[passthrough], h[passthrough]))
    mixed = [i for i in range(len(GROUPS)) if i not in passthrough]
    change = (out[mixed] - h[mixed]).detach().abs().amax(dim=1)
    checks["mixed_rows_min_change"] = float(change.min())
    ok = (checks["grouped_vs_masked_max_abs"] < 1e-12 and checks["lonely_and_retired_exact"]
          and checks["mixed_rows_min_change"] > 1e-3)
    if not ok:
        raise SystemExit(f"make_mixer_goldens.py: {name}: self-check failed: {checks}")

    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*.npy"):
        old.unlink()
    files = {}
    f64 = lambda t: t.detach().numpy().astype(np.float64)  # noqa: E731
    extra = {}
    for pname, getter in cpp_parameters(m, kind, combine):
        if pname == "scale":
            s = m.combine.scale
            sig = torch.sigmoid(s.detach())
            value = sig.reshape(1)
            grad = (s.grad / (sig * (1 - sig))).reshape(1)
            extra["reference_scale_logit"] = float(s.detach())
            extra["reference_grad_scale_logit"] = float(s.grad)
        else:
            value = getter(lambda p: p.detach())
            grad = getter(lambda p: p.grad)
        save(d / f"mixer.{pname}.npy", f64(value), files, f"mixer.{pname}", root)
        save(d / f"grad.{pname}.npy", f64(grad), files, f"grad.{pname}", root)
    save(d / "hidden.npy", f64(h), files, "hidden", root)
    save(d / "groups.npy", np.array(GROUPS, dtype=np.int32), files, "groups", root)
    save(d / "out.npy", f64(out), files, "out", root)
    save(d / "dout.npy", f64(dout), files, "dout", root)
    save(d / "cross.npy", f64(cross), files, "cross", root)
    save(d / "probs.npy", f64(probs), files, "probs", root)
    save(d / "grad.hidden.npy", f64(h.grad), files, "grad.hidden", root)

    mixer = {"kind": kind, "combine": combine, "hidden_size": C, "num_heads": heads,
             "gate_hidden": G, "temperature": case["tau"], "ln_eps": LN_EPS}
    ckpt = {"format": "crossbatch-checkpoint-1", "method": "mixer", "mix_layer": -1,
            "projection": "project", "lm_head": False,
            "model": {"hidden_size": C, "vocab_size": 0, "num_layers": 0},
            "info": {"made_by": "tools/make_mixer_goldens.py", "case": name, "seed": case["seed"]},
            "mixer": mixer}
    (d / "checkpoint.json").write_text(json.dumps(ckpt, indent=2) + "\n")
    return {"mixer": mixer, "batch": len(GROUPS), "groups": GROUPS, "seed": case["seed"],
            "loss": "sum(dout * out)", "self_checks": checks, **extra,
            "checkpoint": str((d / "checkpoint.json").relative_to(root)), "tensors": files}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "tests/data/goldens/mixer"))
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    out_dir = pathlib.Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = {"cases": {}}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
    for name in args.cases:
        if name not in CASES:
            raise SystemExit(f"make_mixer_goldens.py: unknown case {name!r} ({', '.join(CASES)})")
        manifest["cases"][name] = make_case(name, CASES[name], out_dir, out_dir)
        c = manifest["cases"][name]
        print(f"{name}: B={c['batch']} C={c['mixer']['hidden_size']} "
              f"heads={c['mixer']['num_heads']} self-checks {c['self_checks']}")
    manifest["cases"] = {k: manifest["cases"][k] for k in CASES if k in manifest["cases"]}
    manifest["made_by"] = "tools/make_mixer_goldens.py"
    manifest["versions"] = {"torch": torch.__version__, "numpy": np.__version__,
                            "python": sys.version.split()[0]}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"wrote {len(manifest['cases'])} cases to {out_dir} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
