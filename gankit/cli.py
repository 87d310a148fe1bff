"""The ``gankit`` command line.

Every user error ends in one line on stderr and exit status 2; ``--debug`` (or
``GANKIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gankit.errors import GankitError, TrainingInterrupted
from gankit.plugins import plugin_failure

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_set_option = click.option(
    "--set", "-s", "set_", multiple=True, metavar="KEY=VALUE",
    help="Override a config key, e.g. --set training.steps=500 (repeatable).",
)
_preset_option = click.option("--preset", "-p", default=None, help="A config shipped with gankit (see `gankit presets`).")
_config_arg = click.argument("config", required=False, type=click.Path(path_type=Path))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="gankit")
def app(debug: bool):
    """Train GANs on PyTorch, TensorFlow or JAX from one config."""


@app.command()
@_config_arg
@_preset_option
@_set_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar: a line every training.log_every steps instead.")
@click.option("--resume", "-r", "resume", type=click.Path(path_type=Path), default=None, metavar="RUN_DIR|CHECKPOINT",
              help="Continue the run in this directory from its newest checkpoint, or from exactly the checkpoint "
                   "given (RUN_DIR/checkpoints/step_N.json; what the run wrote after its step is dropped). --set "
                   "applies on top of the run's config.")
def train(config: Optional[Path], preset: Optional[str], set_: tuple[str, ...], quiet: bool, resume: Optional[Path]):
    """Train a GAN; write samples, metrics, TensorBoard files and checkpoints into a run directory.

    CONFIG is a .toml, .yaml or .json file; without it the mnist preset trains. Under
    torchrun (or with TF_CONFIG) every process trains its share; rank 0 writes.
    """
    from gankit.monitor import print_line
    from gankit.training import train as run_training

    # The run's lines (start banner, a line every log_every steps without a progress bar, the
    # results) go to stdout as they happen; the progress bar, on a terminal, to stderr.
    run_training(config, preset=preset, overrides=set_, progress=not quiet and sys.stderr.isatty(),
                 resume=resume, echo=print_line)


@app.command()
@click.option("--kind", "-k", default=None, help="Only this kind: backend, loss, regularizer, architecture, dataset, metric, feature_extractor.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(kind: Optional[str], as_json: bool):
    """List every registered plugin and the distribution providing it."""
    from gankit.plugins import PluginWarning, get_registry

    with warnings.catch_warnings():  # printed once each, below the table
        warnings.simplefilter("ignore", PluginWarning)
        reg = get_registry()
    if kind is not None and kind not in reg.kinds():
        raise GankitError(f"unknown plugin kind {kind!r}; known: {', '.join(reg.kinds())}")
    rows = []
    for e in reg.entries(kind):
        status = ""
        if e.kind == "backend":
            status = "available" if reg.backend_available(e.name) else f"not installed: pip install 'gankit[{e.record.extra or e.name}]'"
        elif e.kind == "architecture" and getattr(e.record, "backends", None):
            status = f"{', '.join(e.record.backends)} only"
        params = {k: ("<required>" if f.is_required() else f.get_default(call_default_factory=True))
                  for k, f in e.record.params.model_fields.items()}
        rows.append({"kind": e.kind, "name": e.name, "distribution": e.distribution, "plugin": e.plugin,
                     "description": e.record.description, "params": params, "status": status})
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        _print_plugin_problems(reg)
        return
    table = Table(title="gankit plugins")
    for col in ("kind", "name", "distribution", "description", "params"):
        table.add_column(col)
    for r in rows:
        desc = r["description"] + (f" [{r['status']}]" if r["status"] else "")
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        table.add_row(*(escape(str(x)) for x in (r["kind"], r["name"], r["distribution"], desc, params)))
    out.print(table)
    _print_plugin_problems(reg)


def _print_plugin_problems(reg) -> None:
    """Each skipped plugin once, on stderr (the registry's own warnings were held back)."""
    for plugin, dist, reason in reg.failed:
        err.print(f"warning: gankit plugin {plugin!r} from distribution {dist!r} {reason}; it is skipped", markup=False)
    for plugin, dist in reg.disabled:
        err.print(f"note: gankit plugin {plugin!r} from distribution {dist!r} is disabled by GANKIT_DISABLE_PLUGINS",
                  markup=False)


@app.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--num-samples", "-n", type=click.IntRange(min=10), default=None, help="Samples to score (default: evaluation.num_samples of the run's config).")
@click.option("--metric", "-m", "metric_names", multiple=True, help="A metric to compute (repeatable; default: the run's configured metrics, else the defaults for its data).")
@click.option("--backend", default=None, help="Evaluate on this backend instead of the one that trained the run.")
@click.option("--out", "-o", "out_path", type=click.Path(path_type=Path), default=None, help="Where to write the JSON (default: RUN_DIR/eval.json).")
def evaluate(run_dir: Path, num_samples: Optional[int], metric_names: tuple[str, ...], backend: Optional[str], out_path: Optional[Path]):
    """Score a trained run's generator with sample-quality metrics; write eval.json.

    RUN_DIR is a run directory (or a checkpoint file). The EMA generator is used when
    the checkpoint has one.
    """
    from gankit.evaluation import evaluate_run

    _backend_option(backend)
    if out_path is not None:
        _output_file(out_path, "--out")
    result, path = evaluate_run(run_dir, num_samples=num_samples, metrics=list(metric_names) or None,
                                backend=backend, out=out_path)
    table = Table(title=f"{run_dir} · step {result.step} · {result.num_samples} samples · {result.generator}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        arrow = {True: " ↑", False: " ↓"}.get(result.higher_is_better.get(key), "")
        table.add_row(escape(key) + arrow, f"{value:.6g}")
    out.print(table)
    for name, reason in result.skipped.items():
        err.print(f"warning: metric {name!r} skipped: {reason}", markup=False)
    if result.reals_note():
        err.print(f"warning: {result.reals_note()}", markup=False)
    out.print(f"wrote {path}", markup=False)


@app.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--backend", "-b", default=None, help="Backend to sample on (default: the one that trained the checkpoint).")
@click.option("--num-samples", "-n", type=click.IntRange(min=1), default=64, show_default=True, help="How many samples.")
@click.option("--out", "-o", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("samples.png"),
              show_default=True, help="A .png image grid (image data) or scatter plot (2D points), or a .npy array.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Latent seed: the same seed gives the same samples on every backend.")
@click.option("--truncation", "-t", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Truncation trick: redraw latent coordinates whose absolute value exceeds T (less variety, more fidelity).")
@click.option("--label", "labels", type=click.IntRange(min=0), multiple=True,
              help="Class label(s) for a class-conditional generator, repeated in turn (default: every class in turn).")
@click.option("--rejection", type=click.Choice(["none", "drs"]), default=None,
              help="none: every generated sample; drs: discriminator rejection sampling (default: the run's sampling.rejection).")
@click.option("--drs-percentile", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="DRS's gamma as a percentile in [0, 1): higher is stricter (default: the run's sampling.drs_percentile; unset there: exact rejection sampling).")
@click.option("--device", default="auto", show_default=True, help="Device: auto, cpu, cuda, ...")
@click.option("--interpolate", "steps", type=click.IntRange(min=2), default=None,
              help="Instead of samples: walks of STEPS points between random latent pairs, each pair as a "
                   "straight (lerp) row and a spherical (slerp) row; one walk per class for a conditional generator.")
@click.option("--walks", type=click.IntRange(min=1), default=None,
              help="With --interpolate: how many walks (default 4; conditional: one per class, or per --label).")
def sample(checkpoint: Path, backend: Optional[str], num_samples: int, out_path: Path, seed: int,
           truncation: Optional[float], labels: tuple[int, ...], rejection: Optional[str],
           drs_percentile: Optional[float], device: str, steps: Optional[int], walks: Optional[int]):
    """Draw samples from a trained generator: CHECKPOINT is a run directory or a checkpoint file.

    A checkpoint written by one backend samples on any other (--backend).
    """
    import numpy as np

    from gankit import plotting
    from gankit.restore import load_checkpoint

    _backend_option(backend)
    if out_path.suffix.lower() not in (".png", ".npy"):
        raise GankitError(f"--out {str(out_path)!r} must end in .png or .npy")
    _output_file(out_path, "--out")
    if steps is None and walks is not None:
        raise GankitError("--walks applies to --interpolate", hint="e.g. --interpolate 8 --walks 4")
    if steps is not None and (rejection == "drs" or drs_percentile is not None):
        raise GankitError("--interpolate shows the generator itself; it does not combine with --rejection drs "
                          "or --drs-percentile")
    given_n = click.get_current_context().get_parameter_source("num_samples") == click.core.ParameterSource.COMMANDLINE
    if steps is not None and given_n:
        raise GankitError("-n does not apply to --interpolate", hint="set how many walks with --walks")
    if steps is not None and walks is not None and len(labels) > walks:
        raise GankitError(f"{len(labels)} labels for {walks} walks: the walks would leave out "
                          f"{', '.join(map(str, labels[walks:]))}", hint="give as many --walks as labels, or fewer labels")
    if steps is None and len(labels) > num_samples:
        raise GankitError(f"{len(labels)} labels for {num_samples} samples: the samples would leave out "
                          f"{', '.join(map(str, labels[num_samples:]))}", hint="raise -n, or give fewer labels")
    gan = load_checkpoint(checkpoint, backend=backend, device=device)
    if drs_percentile is not None and (rejection or gan.sampling["rejection"]) != "drs":
        raise GankitError("--drs-percentile applies to discriminator rejection sampling; this sampling is "
                          f"--rejection {rejection or gan.sampling['rejection']}", hint="add --rejection drs")
    if steps is not None:
        _interpolate(gan, checkpoint, steps, walks, labels, seed, truncation, out_path)
        return
    y = None
    if labels:
        if gan.num_classes is None:
            raise GankitError("--label applies to class-conditional generators; this one is unconditional")
        y = np.resize(np.asarray(labels, dtype=np.int64), num_samples)
    x = gan.sample(num_samples, seed=seed, truncation=truncation, labels=y, rejection=rejection,
                   percentile=drs_percentile)
    if out_path.suffix.lower() == ".npy":
        _write_output(out_path, "--out", lambda tmp: np.save(tmp, x, allow_pickle=False))
    elif x.ndim == 4:
        _write_output(out_path, "--out", lambda tmp: plotting.image_grid(tmp, x))
    elif x.ndim == 2 and x.shape[1] == 2:
        _write_output(out_path, "--out", lambda tmp: plotting.scatter(
            tmp, x, None, title=f"{checkpoint} · {gan.backend} · seed {seed}"))
    else:
        raise GankitError(f"samples of shape {x.shape[1:]} cannot be drawn as a picture", hint="use --out FILE.npy")
    out.print(f"wrote {num_samples} samples of shape {tuple(x.shape[1:])} from step {gan.manifest.step} "
              f"({gan.backend}) to {out_path}", markup=False)


#: The most samples `gankit sample --interpolate` generates (2 x walks x steps).
MAX_WALK_SAMPLES = 20_000


def _interpolate(gan, checkpoint: Path, steps: int, walks: Optional[int], labels: tuple[int, ...], seed: int,
                 truncation: Optional[float], out_path: Path) -> None:
    """`gankit sample --interpolate STEPS`: the walks as a grid picture or a .npy array."""
    import numpy as np

    from gankit import plotting
    from gankit.interpolation import walks as walk
    from gankit.nets import class_labels

    y = None
    if gan.num_classes:
        given = np.asarray(labels, dtype=np.int64) if labels else np.arange(gan.num_classes)
        y = np.resize(class_labels(given, given.shape, gan.num_classes), walks or len(given))
    elif labels:
        raise GankitError("--label applies to class-conditional generators; this one is unconditional")
    n = len(y) if y is not None else (walks or 4)
    if 2 * n * steps > MAX_WALK_SAMPLES:
        raise GankitError(f"{n} walks of {steps} steps make {2 * n * steps:,} samples (straight and spherical), "
                          f"more than the {MAX_WALK_SAMPLES:,} one picture holds", hint="use fewer --walks or steps")
    x = walk(gan, steps, n, seed=seed, truncation=truncation, labels=y)  # (walks, 2, steps, ...)
    if out_path.suffix.lower() == ".npy":
        _write_output(out_path, "--out", lambda tmp: np.save(tmp, x, allow_pickle=False))
    elif x.ndim == 6:
        _write_output(out_path, "--out", lambda tmp: plotting.image_grid(tmp, x.reshape(-1, *x.shape[3:]), columns=steps))
    else:
        raise GankitError(f"walks over samples of shape {x.shape[3:]} cannot be drawn as a grid",
                          hint="use --out FILE.npy (shape: walks, [straight, spherical], steps, sample)")
    what = f"{n} walk{'s' if n != 1 else ''}" + (f" (classes {', '.join(map(str, y))})" if y is not None else "")
    out.print(f"wrote {what} of {steps} steps, straight and spherical rows, from step {gan.manifest.step} "
              f"({gan.backend}) to {out_path}", markup=False)


@app.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Export format.")
@click.option("--out", "-o", "out_path", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Output file, e.g. g.onnx.")
@click.option("--backend", "-b", default=None, help="Backend whose exporter to use (default: the one that trained the checkpoint).")
@click.option("--opset", type=click.IntRange(min=13), default=None, help="ONNX opset (default: the exporter's choice, at least 17).")
def export(checkpoint: Path, fmt: str, out_path: Path, backend: Optional[str], opset: Optional[int]):
    """Export a checkpoint's generator (the EMA generator when there is one) to ONNX.

    The model takes latents "z" (batch, latent_dim) float32 (and "labels" (batch,) int64
    for a class-conditional generator) and returns "samples".
    """
    from gankit.export import export_onnx

    _backend_option(backend)
    if out_path.suffix.lower() != ".onnx":
        raise GankitError(f"--out {str(out_path)!r} must end in .onnx", hint="e.g. --out generator.onnx")
    _output_file(out_path, "--out")
    infos = []

    def write(tmp: Path) -> None:
        try:
            infos.append(export_onnx(checkpoint, tmp, backend=backend, opset=opset))
        except GankitError:
            raise
        except Exception as exc:
            if opset is None:
                raise  # the exporter's own default failed: a bug, not the user's input
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GankitError(f"the exporter cannot write ONNX opset {opset}: {first}",
                              hint="leave out --opset for the exporter's default, or choose a lower one "
                                   "(17 works with every backend)") from exc

    _write_output(out_path, "--out", write)
    info = infos[0]
    out.print(f"wrote {out_path} ({info.backend} exporter, opset {info.opset}; inputs {', '.join(info.inputs)})", markup=False)


@app.command()
def presets():
    """List the configs shipped with gankit."""
    from gankit.config import preset_names, read_preset

    for name in preset_names():
        out.print(f"{name:12s} {read_preset(name).get('description', '')}".rstrip(), markup=False)


@app.command()
@click.option("--backend", "-b", "backends", multiple=True, metavar="NAME",
              help="A backend to check (repeatable; default: every installed one).")
@click.option("--loss", "losses", multiple=True, metavar="NAME",
              help='Check only this loss (repeatable): NAME or NAME:{"param": value}.')
@click.option("--regularizer", "regularizers", multiple=True, metavar="NAME", help="Check only this regularizer (repeatable).")
@click.option("--architecture", "architectures", multiple=True, metavar="NAME", help="Check only this architecture (repeatable).")
@click.option("--training/--no-training", default=None,
              help="Check the backends' training steps (default: only when no plugin is selected).")
@click.option("--check", "checks", multiple=True, metavar="GLOB", help="Only checks whose name matches, e.g. 'loss.*' (repeatable).")
@click.option("--dtype", "dtypes", multiple=True, metavar="DTYPE", help="Only these dtypes: float32, float64, float16, bfloat16.")
@click.option("--json", "json_path", default=None, type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the full report (every case, with details) as JSON.")
@click.option("--thorough", is_flag=True, help="The thorough hypothesis profile: many random examples, shrunk failures.")
@click.option("--list", "list_checks", is_flag=True, help="List the checks and exit.")
@click.option("--durations", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also list the N slowest checks (per check and backend) and the time per kind of check.")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="CPU threads of torch's and TensorFlow's pools (default: OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS "
                   "and TF_NUM_INTEROP_THREADS when set, else 1 on 2 CPUs or fewer or with several jobs, else the "
                   "frameworks' default).")
@click.option("--jobs", "-j", type=click.IntRange(min=1, max=64), default=None, metavar="N",
              help="Processes to run the checks in (default: one per usable CPU, at most 4, fewer for a small "
                   "selection; 1 runs everything in this process).")
def conformance(backends, losses, regularizers, architectures, training, checks, dtypes, json_path, thorough, list_checks,
                durations, threads, jobs):
    """Check every backend and plugin against the same GAN mathematics.

    Without options: every installed backend x every registered loss, regularizer and
    architecture, plus each backend's training step. Exit status 1 if any check fails.
    """
    from gankit.conformance import CHECKS, Suite
    from gankit.conformance.suite import MAX_DEFAULT_JOBS, default_jobs, thread_environment
    from gankit.threads import usable_cpus

    if list_checks:
        for spec in CHECKS.values():
            scope = "across backends" if spec.across else ", ".join(spec.dtypes) or "float32 trainers"
            out.print(f"{spec.name:40s} {spec.doc} [{scope}]", markup=False)
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    may_share = jobs or min(usable_cpus(), MAX_DEFAULT_JOBS)
    with thread_environment(threads, jobs=may_share):  # before the frameworks start
        suite = Suite(backends=backends or None, losses=losses or None, regularizers=regularizers or None,
                      architectures=architectures or None, training=training, checks=checks or None,
                      dtypes=dtypes or None, profile="thorough" if thorough else "ci")
        cases = suite.cases()
        with Progress(TextColumn("conformance"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      console=err, transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("", total=len(cases))
            report = suite.run(on_result=lambda r: bar.update(task, advance=1,
                                                              description=escape(f"{r.check} {r.subject}")),
                               jobs=jobs or default_jobs(suite))
    report.render(out, durations=durations)
    if json_path is not None:
        out.print(f"wrote {report.write_json(json_path)}", markup=False)
    return report.exit_status


@app.group("config")
def config_group():
    """Validate configs and print their schema."""


@config_group.command("check")
@_config_arg
@_preset_option
@_set_option
def config_check(config: Optional[Path], preset: Optional[str], set_: tuple[str, ...]):
    """Validate a config and print it fully resolved (every default filled in)."""
    from gankit.config import load_config

    cfg = load_config(config, preset=preset, overrides=set_)
    click.echo(cfg.model_dump_json(indent=2))


@config_group.command("schema")
def config_schema():
    """Print the JSON Schema of the config (for editors)."""
    from gankit.config import schema

    click.echo(json.dumps(schema(), indent=2))


@config_group.command("reference")
def config_reference():
    """Print the configuration reference (Markdown), generated from the models."""
    from gankit.reference import config_reference as generate

    click.echo(generate(), nl=False)


def _backend_option(backend: Optional[str]) -> None:
    """Refuse, before any work, a --backend of `sample`, `evaluate` or `export` that is not
    installed: not registered at all, or registered without its framework."""
    if backend is None:
        return
    from gankit.plugins import get_registry
    from gankit.restore import installed_backends

    reg = get_registry()
    if not reg.has("backend", backend):
        raise GankitError(f"--backend {backend!r} is not installed (installed: {', '.join(installed_backends(reg)) or 'none'})",
                          hint="see `gankit plugins --kind backend`")
    if not reg.backend_available(backend):
        reg.backend(backend)  # raises BackendUnavailable: which package is missing, and how to install it


def _output_file(path: Path, option: str) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a path
    under a file, or a folder this user cannot write (its folders are created)."""
    try:
        folder = path.is_dir()
    except OSError as exc:  # a name too long, say
        raise GankitError(f"{option} {str(path)!r} cannot be written ({exc.strerror or exc})",
                          hint="choose another path") from None
    if folder:
        raise GankitError(f"{option} {str(path)!r} is a folder", hint="give a file name inside it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GankitError(f"{option} {str(path)!r} cannot be written: its folder cannot be created "
                          f"({exc.strerror or exc})", hint="choose another path") from None
    if not os.access(path.parent, os.W_OK):
        raise GankitError(f"{option} {str(path)!r} cannot be written: {str(path.parent)!r} is not writable by you",
                          hint="choose another path")
    return path


def _write_output(path: Path, option: str, write: Callable[[Path], Any]) -> Path:
    """Write an output file through a temporary file beside it, renamed over it once whole:
    a write that fails (a full disk, a name too long, an exporter's error) leaves an
    existing file as it was and no half-written one, and is one line naming the path."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem[:40]}.", suffix=f"{path.suffix}.tmp{path.suffix}",
                                    dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise GankitError(f"{option} {str(path)!r} cannot be written ({exc.strerror or exc})",
                          hint="choose another path") from None
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise GankitError(f"{option} {str(path)!r} cannot be written ({exc.strerror or exc})",
                          hint="choose another path") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err.print(f"warning: {' '.join(str(message).split())}", markup=False)


def _debug_flag(args: list[str]) -> bool:
    """Whether ``--debug`` is among the options before the command (``gankit --debug train``):
    after it, it is no option of the command's and click says so."""
    for arg in args:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gankit`` console script."""
    warnings.showwarning = _show_warning
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_flag(args) or os.environ.get("GANKIT_DEBUG", "") not in ("", "0")
    previous = os.environ.get("GANKIT_DEBUG")
    if debug:
        os.environ["GANKIT_DEBUG"] = "1"  # backends show their frameworks' start-up logs too
    try:
        return _main(args, debug)
    finally:  # one call's --debug must not outlive it (main runs in-process in tests and tools)
        if previous is None:
            os.environ.pop("GANKIT_DEBUG", None)
        else:
            os.environ["GANKIT_DEBUG"] = previous


def _main(args: list[str], debug: bool) -> int:
    try:
        rc = app.main(args=args, prog_name="gankit", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except TrainingInterrupted as exc:  # a checkpoint was saved: say how to continue
        err.print(f"interrupted: {exc.one_line()}", markup=False)
        return exc.exit_code
    except GankitError as exc:
        if debug:
            raise
        err.print(f"error: {exc.one_line()}", markup=False)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted", markup=False)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:  # `gankit`, `gankit config`: the help, as --help shows it
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 0
    except click.ClickException as exc:
        if debug:
            raise
        err.print(f"error: {' '.join(exc.format_message().split())} (see `gankit --help`)", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    except Exception as exc:  # a bug in gankit or a plugin, not the user's input
        if debug:
            raise
        failure = plugin_failure(exc)  # a third-party plugin's own code raised it: name the plugin
        if failure is not None:
            err.print(f"error: {failure.one_line()}", markup=False)
            return failure.exit_code
        err.print(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())} (run with --debug for the traceback, and please report it)", markup=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
