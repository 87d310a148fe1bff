"""Mode collapse and PacGAN packing on the 2D ring and grid: modes with and without packing.

    .venv/bin/python tests/benchmarks/packing.py                                  # ring8 and grid25, pack 1 and 4, 3 seeds
    .venv/bin/python tests/benchmarks/packing.py --presets ring8_collapse --packs 1 4 --seeds 0 1 2
    .venv/bin/python tests/benchmarks/packing.py --presets grid25 --set training.steps=1500

Each run is ``gankit train --preset P --set discriminator.params.pack=M --set seed=S`` on
torch with one framework thread, through the real training driver, scored at its last
step by the ``modes`` metric on 2,500 samples (VEEGAN/PacGAN: a sample is high quality
within 3σ of its nearest mode; a mode is captured when it is the nearest mode of at least
one high-quality sample; mode KL: the histogram of samples over their nearest modes
against the uniform one). It prints one line per run and a table (mean and min over
seeds) with the CPU seconds of the whole ``gankit.train`` call (process time, which
other jobs on the machine do not inflate). Packing keeps the discriminator's width: only
its first layer reads m samples, as in PacGAN (Lin et al. 2018), whose Table 1 is beside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: PacGAN (Lin et al. 2018), Table 1: modes captured and % high-quality samples, mean over trials.
PACGAN_TABLE1 = {"ring8": {1: (6.3, 98.2), 4: (7.8, 95.9)}, "grid25": {1: (17.3, 94.8), 4: (24.8, 93.6)}}


def run_one(preset: str, pack: int, seed: int, out_dir: Path, extra: list[str], backend: str) -> dict:
    import gankit

    overrides = [f"seed={seed}", f"backend={backend}", f"discriminator.params.pack={pack}", "training.threads=1",
                 f"output.dir={out_dir}", f"output.name={preset}-pack{pack}-{seed}", "output.overwrite=true",
                 "training.tensorboard=false", 'evaluation.metrics=[{"name": "modes"}]', "evaluation.num_samples=2500",
                 "sampling.rejection=none", "evaluation.every=1000000", *extra]
    cpu = time.process_time()
    run = gankit.train(preset=preset, overrides=overrides)
    cpu = time.process_time() - cpu
    m = run.evaluation.metrics
    return {"preset": preset, "data": run.config.data.name, "pack": pack, "seed": seed, "steps": run.steps,
            "cpu_seconds": round(cpu, 1), "modes": m["modes_captured"], "modes_total": m["modes_total"],
            "high_quality": m["high_quality"], "mode_kl": m["mode_kl"], "run": str(run.directory)}


def table(rows: list[dict]) -> str:
    lines = ["| preset | pack | runs | modes (mean, min) | high-quality % (mean, min) | mode KL (mean) | CPU s (max) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted({(r["preset"], r["pack"]) for r in rows})
    for preset, pack in keys:
        rs = [r for r in rows if r["preset"] == preset and r["pack"] == pack]
        modes = [r["modes"] for r in rs]
        hq = [r["high_quality"] for r in rs]
        lines.append(f"| `{preset}` | {pack} | {len(rs)} | {sum(modes) / len(rs):.1f} ({min(modes):.0f}) / "
                     f"{rs[0]['modes_total']:.0f} | {sum(hq) / len(rs):.1f} ({min(hq):.1f}) | "
                     f"{sum(r['mode_kl'] for r in rs) / len(rs):.3f} | {max(r['cpu_seconds'] for r in rs):.0f} |")
    for data, by_pack in PACGAN_TABLE1.items():
        for pack, (modes, hq) in by_pack.items():
            if any(r["data"] == data for r in rows):
                lines.append(f"| PacGAN Table 1, {data}, {'GAN' if pack == 1 else f'PacGAN{pack}'} | {pack} | – | "
                             f"{modes} | {hq} | – | – |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["ring8", "grid25"])
    p.add_argument("--packs", nargs="+", type=int, default=[1, 4])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--backend", default="torch")
    p.add_argument("--set", dest="extra", action="append", default=[], help="a further override (repeatable)")
    p.add_argument("--runs", type=Path, default=None, help="keep the run directories here (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    if args.backend == "torch":
        import torch

        torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.runs or Path(tmp)
        for preset in args.presets:
            for pack in args.packs:
                for seed in args.seeds:
                    row = run_one(preset, pack, seed, out, args.extra, args.backend)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
