"""A hand-written PyTorch loop for the PacGAN toys, for trying settings quickly.

    .venv/bin/python tests/benchmarks/toy_probe.py --seed 0 --ema 0 --spread     # the first grid25_hq (R1 0.03, width 256)
    .venv/bin/python tests/benchmarks/toy_probe.py --seed 1 --ema 0 --width 128 --steps 15000 --gamma 0.1 --gamma-end 0
    .venv/bin/python tests/benchmarks/toy_probe.py --toy ring8 --width 128 --gamma 0.01 --steps 9000

The same algorithm as gankit's step for these presets (MLPs, non-saturating loss, R1 on
real samples with an optional linear fade, ``--gamma`` to ``--gamma-end``; Adam with
linear decay to 0; an EMA of the generator from ``--ema-start``), without gankit, so a
setting can be explored in one file. It prints the PacGAN mode metrics (modes captured,
% high quality on 2,500 samples) of the EMA generator and of the generator itself, and
of the generator through discriminator rejection sampling (gankit.rejection) at several
percentiles; ``--spread`` adds the share of samples by distance to their nearest mode
(in sigmas: 0-1, 1-2, ..., beyond 10), which tells modes that are too wide (3-6 sigma)
from bridges between modes (beyond 10). ``--refine-steps`` trains the discriminator
alone after training (the DRS paper's step) and scores DRS as it goes. Settings that
pay off belong in the presets, measured there by quality_toys.py; docs/benchmarks.md
records what this probe found.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn as nn

from gankit.rejection import rejection_sample


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy", default="grid25", choices=["grid25", "ring8"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--gdepth", type=int, default=3, help="generator hidden layers")
    p.add_argument("--gamma", type=float, default=0.03, help="R1 weight")
    p.add_argument("--gamma-end", type=float, default=None, help="R1 weight at the last step, interpolated linearly from --gamma (default: constant)")
    p.add_argument("--d-width", type=int, default=None, help="discriminator width (default --width)")
    p.add_argument("--d-final-lr", type=float, default=0.0, help="the discriminator's learning rate at the end, as a fraction of --lr")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ema-start", type=float, default=0.5, help="fraction of the steps before the EMA averages")
    p.add_argument("--latent", type=int, default=2, help="latent dimension")
    p.add_argument("--refine-steps", type=int, default=0, help="discriminator-only steps after training, G fixed (DRS paper)")
    p.add_argument("--refine-lr", type=float, default=1e-4)
    p.add_argument("--refine-gamma", type=float, default=None, help="R1 weight while refining (default --gamma)")
    p.add_argument("--spread", action="store_true", help="print the share of samples by distance to the nearest mode, in sigmas")
    p.add_argument("--top-k", type=float, default=1.0, help="top-k generator updates (Sinha et al. 2020): final share kept")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    if a.toy == "grid25":
        modes, std = np.array([(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], float), 0.05
    else:
        t = np.arange(8) * 2 * np.pi / 8
        modes, std = np.stack([np.cos(t), np.sin(t)], 1), 0.01

    def data(n):
        return torch.tensor(modes[rng.integers(0, len(modes), n)] + std * rng.standard_normal((n, 2)), dtype=torch.float32)

    def mlp(i, o, depth, act, width=None):
        layers, d = [], i
        for _ in range(depth):
            layers += [nn.Linear(d, width or a.width), act()]
            d = width or a.width
        return nn.Sequential(*layers, nn.Linear(d, o))

    def score(x):
        d = np.linalg.norm(x[:, None] - modes[None], axis=2)
        good = d.min(1) < 3 * std
        near = np.histogram(d.min(1) / std, [0, 1, 2, 3, 4, 6, 10, np.inf])[0] / len(x)
        spread = " ".join(f"{100 * f:.1f}" for f in near) if a.spread else ""
        return f"{len(set(d.argmin(1)[good]))} modes, {100 * good.mean():.1f}%" + (f" [by sigma 0-1-2-3-4-6-10-: {spread}]" if spread else "")

    def run(net):
        return lambda z, y=None: net(torch.as_tensor(z, dtype=torch.float32)).numpy()

    def drs_line(G, D, qs=(None,)):
        line = ""
        with torch.no_grad():
            for q in qs:
                r = rejection_sample(run(G), lambda x, y=None: D(torch.as_tensor(x)).squeeze(1).numpy(),
                                     lambda n, g: g.standard_normal((n, a.latent)).astype(np.float32), 2500, percentile=q, seed=7)
                line += f" {q or 'exact'}: {score(r.samples)} (accepts {100 * r.acceptance:.0f}%);"
        return line

    G, D = mlp(a.latent, 2, a.gdepth, nn.ReLU), mlp(2, 1, 3, lambda: nn.LeakyReLU(0.2), a.d_width)
    E = copy.deepcopy(G).requires_grad_(False)
    og = torch.optim.Adam(G.parameters(), a.lr, betas=(0.5, 0.999), fused=True)
    od = torch.optim.Adam(D.parameters(), a.lr, betas=(0.5, 0.999), fused=True)
    sp = nn.functional.softplus
    k = a.batch
    start = time.process_time()
    for s in range(a.steps):
        for o, f in ((og, 0.0), (od, a.d_final_lr)):
            for group in o.param_groups:
                group["lr"] = a.lr * (1 - (1 - f) * s / a.steps)
        real = data(a.batch).requires_grad_(True)
        with torch.no_grad():
            fake = G(torch.randn(a.batch, a.latent))
        dr, df = D(real), D(fake)
        grad, = torch.autograd.grad(dr.sum(), real, create_graph=True)
        g_t = a.gamma if a.gamma_end is None else a.gamma + (a.gamma_end - a.gamma) * s / a.steps
        ld = sp(-dr).mean() + sp(df).mean() + g_t / 2 * grad.square().sum(1).mean()
        od.zero_grad(set_to_none=True)
        ld.backward()
        od.step()
        fl = D(G(torch.randn(a.batch, a.latent))).squeeze(1)
        if a.top_k < 1:
            k = max(int(a.top_k * a.batch), int(k * 0.99)) if s else a.batch
            fl = torch.topk(fl, k).values
        og.zero_grad(set_to_none=True)
        sp(-fl).mean().backward()
        og.step()
        with torch.no_grad():
            for pe, pg in zip(E.parameters(), G.parameters()):
                pe.copy_(pg) if s < a.ema_start * a.steps else pe.lerp_(pg, 1 - a.ema)
    gamma = a.gamma if a.refine_gamma is None else a.refine_gamma
    for group in od.param_groups:
        group["lr"] = a.refine_lr
    if a.refine_steps:
        print(f"  before refining: {drs_line(G, D)}", flush=True)
    for s in range(a.refine_steps):
        real = data(a.batch).requires_grad_(True)
        with torch.no_grad():
            fake = G(torch.randn(a.batch, a.latent))
        dr, df = D(real), D(fake)
        ld = sp(-dr).mean() + sp(df).mean()
        if gamma:
            grad, = torch.autograd.grad(dr.sum(), real, create_graph=True)
            ld = ld + gamma / 2 * grad.square().sum(1).mean()
        od.zero_grad(set_to_none=True)
        ld.backward()
        od.step()
        if s + 1 in (a.refine_steps // 4, a.refine_steps // 2, a.refine_steps) and s + 1 < a.refine_steps:
            print(f"  refined {s + 1} steps: {drs_line(G, D)}", flush=True)
    cpu = time.process_time() - start

    with torch.no_grad():
        z = torch.randn(2500, a.latent, generator=torch.Generator().manual_seed(123))
        line = f"seed {a.seed}: EMA {score(E(z).numpy())}; generator {score(G(z).numpy())}; with DRS at"
    line += drs_line(G, D, (None, 0.5, 0.8, 0.9, 0.95))
    print(f"{line} {cpu:.0f} s CPU ({vars(a)})", flush=True)


if __name__ == "__main__":
    main()
