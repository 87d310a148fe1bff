"""Quality benchmark: the PacGAN 2D ring and grid, 5 seeds per backend, beside PacGAN's Table 1.

    .venv/bin/python tests/benchmarks/quality_toys.py                 # both toys, both backends, 5 seeds
    .venv/bin/python tests/benchmarks/quality_toys.py --toys ring8 --backends torch --seeds 2
    .venv/bin/pytest tests/benchmarks/test_quality_toys.py -s         # the same, asserting the targets

Each run is ``gankit.train(preset=TOY_hq, seed=S, backend=B)`` — the shipped presets
``ring8_hq`` and ``grid25_hq``, through the real training driver — then the ``modes`` metric on 2,500 samples (VEEGAN/PacGAN: a
sample is high quality within 3σ of its nearest mode; a mode is captured when it is the
nearest mode of at least one high-quality sample; KL of the mode histogram to uniform).
Targets: all 8 / all 25 modes and ≥ 95% high-quality samples in every run, ≤ 2 minutes of
CPU per run. The frameworks run on one thread (``--threads``): these nets are tiny, and
on a shared 2-core machine extra threads only contend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: PacGAN (Lin et al. 2018), Table 1: modes captured and % high-quality samples, mean over trials.
PACGAN_TABLE1 = {
    "ring8": {"GAN": (6.3, 98.2), "PacGAN4": (7.8, 95.9)},
    "grid25": {"GAN": (17.3, 94.8), "PacGAN4": (24.8, 93.6)},
}
MODES = {"ring8": 8, "grid25": 25}
PRESETS = {"ring8": "ring8_hq", "grid25": "grid25_hq"}
TARGET_HIGH_QUALITY = 95.0
TARGET_CPU_SECONDS = 120.0
NUM_SAMPLES = 2500


def limit_threads(backend: str, threads: int) -> None:
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            pass


def run_one(toy: str, backend: str, seed: int, out_dir: Path, extra: list[str] = ()) -> dict:
    import gankit
    from gankit.training import build

    overrides = [f"seed={seed}", f"backend={backend}", f"output.dir={out_dir}", f"output.name={toy}-{backend}-{seed}",
                 "output.overwrite=true", "training.tensorboard=false", *extra]
    cpu, wall = time.process_time(), time.perf_counter()
    run = gankit.train(preset=PRESETS[toy], overrides=overrides)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    exp = build(run.config)
    exp.trainer = run.trainer
    row = {"toy": toy, "backend": backend, "seed": seed, "cpu_seconds": cpu, "wall_seconds": wall, "steps": run.steps,
           "samples": str(run.directory / "samples.npy")}
    return score(exp, row)


def score(exp, row: dict, sampling=None) -> dict:
    """Score a trained run: the generator alone, then through discriminator rejection
    sampling (``sampling``: the run's own settings by default, e.g. its preset's); both are
    reported, and the target is judged on what the sampling table configures."""
    import gankit
    from gankit.evaluation import evaluate, generate

    sampling = sampling or exp.config.sampling
    base = exp.config
    row.update(sampler=sampling.rejection, drs_percentile=sampling.drs_percentile)
    directory = Path(row["samples"]).parent
    for prefix, rejection in (("", "none"), ("drs_", "drs")):
        exp.config = base.model_copy(update={"sampling": sampling.model_copy(update={"rejection": rejection})})
        result = evaluate(exp, num_samples=NUM_SAMPLES, metrics=[gankit.PluginChoice(name="modes")])
        m = result.metrics
        row.update({f"{prefix}modes": m["modes_captured"], f"{prefix}high_quality": m["high_quality"],
                    f"{prefix}mode_kl": m["mode_kl"]})
        if rejection == "drs":
            row["drs_acceptance"] = result.acceptance
            np.save(directory / "samples_drs.npy", generate(exp, NUM_SAMPLES, seed=base.seed), allow_pickle=False)
            row["drs_samples"] = str(directory / "samples_drs.npy")
    exp.config = base
    return row


def rescore(rows: list[dict]) -> list[dict]:
    """Score earlier runs again from their checkpoints (kept with ``--runs DIR``) with the
    presets' current sampling settings; the training figures (CPU seconds) stay theirs."""
    import gankit
    from gankit.evaluation import load_run

    out = []
    for r in rows:
        exp = load_run(Path(r["samples"]).parent)
        sampling = gankit.load_config(preset=PRESETS[r["toy"]], environ={}).sampling
        out.append(score(exp, dict(r), sampling))
        print(f"{r['toy']:7s} {r['backend']:10s} seed {r['seed']}: rescored, with DRS {out[-1]['drs_high_quality']:5.1f}% "
              f"(was {r['drs_high_quality']:5.1f}%), KL {out[-1]['drs_mode_kl']:.3f}", flush=True)
    return out


def judged(r: dict) -> tuple[float, float]:
    """Modes and high-quality % of the sampler the preset configures."""
    return (r["drs_modes"], r["drs_high_quality"]) if r.get("sampler") == "drs" else (r["modes"], r["high_quality"])


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for toy in MODES:
        for backend in sorted({r["backend"] for r in rows}):
            rs = [r for r in rows if r["toy"] == toy and r["backend"] == backend]
            if not rs:
                continue
            for prefix in ("", "drs_"):
                if f"{prefix}modes" not in rs[0]:
                    continue
                out.append({
                    "toy": toy, "backend": backend, "runs": len(rs), "drs": bool(prefix),
                    "configured": (rs[0].get("sampler") == "drs") == bool(prefix),
                    "modes": float(np.mean([r[f"{prefix}modes"] for r in rs])),
                    "modes_min": float(min(r[f"{prefix}modes"] for r in rs)),
                    "high_quality": float(np.mean([r[f"{prefix}high_quality"] for r in rs])),
                    "high_quality_min": float(min(r[f"{prefix}high_quality"] for r in rs)),
                    "mode_kl": float(np.mean([r[f"{prefix}mode_kl"] for r in rs])),
                    "acceptance": float(np.mean([r["drs_acceptance"] for r in rs])) if prefix else None,
                    "cpu_seconds_max": float(max(r["cpu_seconds"] for r in rs)),
                    "passed": all(r[f"{prefix}modes"] == MODES[toy] and r[f"{prefix}high_quality"] >= TARGET_HIGH_QUALITY
                                  and r["cpu_seconds"] <= TARGET_CPU_SECONDS for r in rs),
                })
    return out


def table(summary: list[dict]) -> str:
    lines = ["| toy | method | runs | modes (mean, min) | high-quality % (mean, min) | mode KL | CPU s (max) | target met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for toy in MODES:
        for name, (modes, hq) in PACGAN_TABLE1[toy].items():
            lines.append(f"| {toy} | PacGAN Table 1: {name} | – | {modes} / {MODES[toy]} | {hq} | – | – | – |")
        for s in (s for s in summary if s["toy"] == toy):
            method = f"gankit `{PRESETS[toy]}`, {s['backend']}" + (
                f", DRS (accepts {100 * s['acceptance']:.0f}%)" if s["drs"] else ", generator alone")
            met = ("yes" if s["passed"] else "no") if s["configured"] else ("(yes)" if s["passed"] else "(no)")
            lines.append(
                f"| {toy} | {method} | {s['runs']} | {s['modes']:.1f} ({s['modes_min']:.0f}) / {MODES[toy]} "
                f"| {s['high_quality']:.1f} ({s['high_quality_min']:.1f}) | {s['mode_kl']:.3f} | {s['cpu_seconds_max']:.0f} "
                f"| {met} |")
    return "\n".join(lines)


def picture(rows: list[dict], path: Path) -> Path:
    """Seed 0 of each toy and backend: generated samples (orange) over real ones (grey);
    the generator alone on top and, where the runs have them, its DRS samples below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import gankit

    picks = [r for r in rows if r["seed"] == min(x["seed"] for x in rows)]
    kinds = [("samples", "", "generator")] + ([("drs_samples", "drs_", "DRS")] if all("drs_samples" in r for r in picks) else [])
    fig, axes = plt.subplots(len(kinds), len(picks), figsize=(3.2 * len(picks), 3.4 * len(kinds)), dpi=100, squeeze=False)
    for row, (key, prefix, label) in zip(axes, kinds):
        for ax, r in zip(row, picks):
            rec = gankit.get_registry().get("dataset", r["toy"]).record
            real = rec.factory(rec.params(), seed=0).sample(NUM_SAMPLES, seed=0)
            fake = np.load(r[key])[:NUM_SAMPLES]
            ax.scatter(real[:, 0], real[:, 1], s=2, c="0.6", linewidths=0)
            ax.scatter(fake[:, 0], fake[:, 1], s=2, c="tab:orange", alpha=0.7, linewidths=0)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(f"{r['toy']} · {r['backend']} · seed {r['seed']} · {label}\n"
                         f"{r[prefix + 'modes']:.0f} modes, {r[prefix + 'high_quality']:.1f}% HQ", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def available(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(backend) is not None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="PacGAN 2D ring/grid quality benchmark")
    parser.add_argument("--toys", default="ring8,grid25")
    parser.add_argument("--backends", default="torch,tensorflow")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--seed-list", default=None, metavar="S,S,...",
                        help="run exactly these seeds instead, e.g. 3,4 (to split the 5 seeds across invocations)")
    parser.add_argument("--threads", type=int, default=1, help="framework threads (default 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset key (repeatable), e.g. --set training.steps=500")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--merge", type=Path, nargs="*", default=None,
                        help="instead of training, merge the --json files of earlier invocations (e.g. one per toy and backend run in parallel)")
    parser.add_argument("--rescore", action="store_true",
                        help="with --merge: score the merged runs again from their checkpoints with the presets' current sampling settings")
    parser.add_argument("--json", type=Path, default=None, help="write every run and the summary here")
    parser.add_argument("--picture", type=Path, default=None, help="save a scatter of seed 0 per toy and backend")
    args = parser.parse_args(argv)
    toys = [t for t in args.toys.split(",") if t]
    backends = [b for b in args.backends.split(",") if b and available(b)]
    seeds = [int(s) for s in args.seed_list.split(",") if s] if args.seed_list else list(range(args.seeds))
    rows = []
    if args.merge is not None:
        rows = [r for f in args.merge for r in json.loads(f.read_text())["runs"]]
        backends = []
        if args.rescore:
            rows = rescore(rows)
    with tempfile.TemporaryDirectory(prefix="gankit-quality-") as tmp:
        tmp = args.runs or tmp
        for backend in backends:
            limit_threads(backend, args.threads)
            for toy in toys:
                for seed in seeds:
                    r = run_one(toy, backend, seed, Path(tmp), args.overrides)
                    rows.append(r)
                    print(f"{toy:7s} {backend:10s} seed {seed}: {r['modes']:.0f}/{MODES[toy]} modes, "
                          f"{r['high_quality']:5.1f}% high quality, KL {r['mode_kl']:.3f}; with DRS "
                          f"{r['drs_modes']:.0f} modes, {r['drs_high_quality']:5.1f}% (accepts {100 * r['drs_acceptance']:.0f}%); "
                          f"{r['cpu_seconds']:.0f} s CPU, {r['wall_seconds']:.0f} s wall", flush=True)
        summary = summarise(rows)
        print()
        print(table(summary))
        if args.picture:
            print(f"\npicture: {picture(rows, args.picture)}")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))
    return 0 if all(s["passed"] for s in summary if s["configured"]) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
