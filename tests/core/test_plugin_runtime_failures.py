"""A third-party plugin whose own code fails after it was built (a loss during training, an
architecture while sampling) is one line naming the plugin, its distribution, what it
raised and where, exit 2, with the run's checkpoints kept and the resume command named;
a failure of gankit's own code stays an internal error. And ``gankit train -q`` hides a
plugin's own progress bar (the image check's)."""

import json
import sys
import textwrap

import pytest

import gankit
import gankit.plugins
from gankit.cli import main
from gankit.errors import PluginError
from gankit.plugins import Registry, culprit, plugin_failure

FLAKY_LOSS = '''
import gankit
from gankit_plugins.losses import NonSaturating

CALLS = {"n": 0}


class Flaky(NonSaturating):
    """The non-saturating loss, until its discriminator loss has been asked for FAIL_AT times."""

    FAIL_AT = 7

    def discriminator(self, ops, real_logits, fake_logits):
        CALLS["n"] += 1
        if CALLS["n"] >= self.FAIL_AT:
            raise ValueError("flaky loss gave up")
        return super().discriminator(ops, real_logits, fake_logits)


@gankit.hookimpl
def gankit_register_losses():
    return [gankit.LossRecord(name="flaky", factory=lambda params=None: Flaky())]
'''


FRAGILE_DATA = '''
import gankit
from gankit_plugins.datasets import RingParams, make_ring

STATE = {"broken": False}


def make_fragile(params, seed=0):
    ring = make_ring(params, seed)

    def draw(rng, n):
        if STATE["broken"]:
            raise OSError("the fragile data's store went away")
        return ring.draw(rng, n)

    return gankit.SamplerDataset(draw=draw, sample_shape=(2,), info=ring.info)


@gankit.hookimpl
def gankit_register_datasets():
    return [gankit.DatasetRecord(name="fragile", params=RingParams, factory=make_fragile)]
'''


def _install(root, module: str, dist: str, source: str):
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gankit]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    _install(root, "fake_flaky", "fake-flaky", FLAKY_LOSS)
    _install(root, "fake_fragile", "fake-fragile", FRAGILE_DATA)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(gankit.plugins, "_REGISTRY", None)
    yield tmp_path
    gankit.plugins._REGISTRY = None
    sys.modules.pop("fake_flaky", None)
    sys.modules.pop("fake_fragile", None)


def _lines(err: str) -> list[str]:
    """stderr's lines but warnings (a TensorFlow runtime started by an earlier test warns
    that training.threads cannot apply)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]


def _train_args(site, *extra):
    return ["train", "--preset", "ring8", "-q", "-s", "backend=torch", "-s", "loss.name=flaky",
            "-s", "training.steps=20", "-s", "training.checkpoint_every=2", "-s", "training.n_critic=1",
            "-s", "evaluation.every=0", "-s", f"output.dir={site}", "-s", "output.name=run", *extra]


def test_a_loss_failing_mid_run_is_one_line_naming_it_and_the_checkpoint(site, capsys):
    code = main(_train_args(site))
    err = capsys.readouterr().err
    lines = _lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    line = lines[0]
    run = site / "run"
    # The 7th call fails: step 7 (one discriminator update a step); steps 2, 4, 6 were saved.
    assert line.startswith("error: the loss 'flaky' (plugin 'fake_flaky' from distribution 'fake-flaky') "
                           "failed at step 7: ValueError: flaky loss gave up (at "), line
    assert "fake_flaky.py:" in line
    assert "fix or uninstall the plugin 'fake-flaky', or skip it with GANKIT_DISABLE_PLUGINS=fake-flaky" in line
    saved = run / "checkpoints" / "step_00000006.json"
    assert saved.exists(), sorted(p.name for p in (run / "checkpoints").iterdir())
    assert f"the last checkpoint is {saved}; once fixed, then continue with: gankit train --resume {run}" in line
    assert "internal error" not in err


def test_the_run_resumes_once_the_plugin_is_fixed(site, capsys):
    assert main(_train_args(site)) == 2
    capsys.readouterr()
    sys.modules["fake_flaky"].Flaky.FAIL_AT = 10 ** 9  # "fixed"
    assert main(["train", "--resume", str(site / "run"), "-q"]) == 0, capsys.readouterr().err
    summary = json.loads((site / "run" / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["resumed_from"] == 6


def test_a_failure_before_any_checkpoint_says_none_was_saved(site, capsys):
    code = main(_train_args(site, "-s", "training.checkpoint_every=0", "-s", "training.checkpoint_minutes=0"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "failed at step 7" in err and "no checkpoint was written; once fixed, then start it again from its config" in err


def test_debug_raises_the_plugin_error_with_the_plugins_exception_as_cause(site):
    with pytest.raises(PluginError) as info:
        main(["--debug", *_train_args(site)])
    assert isinstance(info.value.__cause__, ValueError)


def test_gankits_own_failure_beside_an_installed_plugin_stays_an_internal_error(site, capsys, monkeypatch):
    """The plugin is in use and its code is on the stack's way in, but the exception is
    raised by gankit's own code: no plugin is blamed."""
    import gankit.training

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in gankit")

    monkeypatch.setattr(gankit.training, "_last_scalars", broken)
    code = main(_train_args(site))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "internal error: RuntimeError: a bug in gankit" in err
    assert "flaky" not in err


def test_a_dataset_failing_in_gankit_evaluate_is_one_line_naming_it(site, capsys):
    """Outside training the CLI names the plugin too: here a dataset whose draws fail
    when `gankit evaluate` asks it for real samples (an OSError of the plugin's, not a
    full disk of gankit's)."""
    args = ["train", "--preset", "ring8", "-q", "-s", "backend=torch", "-s", "data.name=fragile",
            "-s", "training.steps=4", "-s", "evaluation.every=0", "-s", f"output.dir={site}", "-s", "output.name=run"]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    sys.modules["fake_fragile"].STATE["broken"] = True
    code = main(["evaluate", str(site / "run"), "-n", "200"])
    err = capsys.readouterr().err
    lines = _lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: the dataset 'fragile' (plugin 'fake_fragile' from distribution "
                               "'fake-fragile') failed: OSError: the fragile data's store went away (at "), err
    assert not (site / "run" / "eval.json").exists()


def _raise_from(depth_fn):
    try:
        depth_fn()
    except Exception as exc:  # noqa: BLE001 - the exception under test
        return exc
    raise AssertionError("did not raise")


def test_culprit_is_none_without_third_party_plugins_or_for_gankit_errors(site):
    reg = Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    exc = _raise_from(lambda: 1 / 0)
    assert culprit(exc, reg) is None
    assert plugin_failure(exc, reg) is None
    assert plugin_failure(PluginError("already one line"), Registry.from_environment()) is None


def test_culprit_follows_a_chained_exception_into_the_plugin(site):
    reg = Registry.from_environment()
    flaky = sys.modules["fake_flaky"]
    loss = flaky.Flaky()
    flaky.CALLS["n"] = 10 ** 6

    def wrapped():
        try:
            loss.discriminator(None, None, None)
        except ValueError as inner:
            raise RuntimeError("wrapped by a framework") from inner

    exc = _raise_from(wrapped)
    found = culprit(exc, reg)
    assert found is not None
    entry, where = found
    assert (entry.name, entry.distribution) == ("flaky", "fake-flaky")
    assert where.startswith(flaky.__file__) and where.rsplit(":", 1)[1].isdigit()
    failure = plugin_failure(exc, reg, during="while testing", hint="more")
    assert failure.one_line().startswith("the loss 'flaky' (plugin 'fake_flaky' from distribution 'fake-flaky') "
                                         "failed while testing: RuntimeError: wrapped by a framework (at ")
    assert failure.one_line().endswith("GANKIT_DISABLE_PLUGINS=fake-flaky; more)")


def test_a_third_party_record_of_gankits_own_factory_is_not_blamed_for_gankits_code():
    """A plugin that registers one of gankit's built-in factories under a new name does not
    own gankit_plugins: a failure there is not put on it."""
    from gankit_plugins.losses import NonSaturating

    class Reuse:
        @gankit.hookimpl
        def gankit_register_losses(self):
            return [gankit.LossRecord(name="ns_again", factory=NonSaturating)]

    reg = Registry.from_plugins([Reuse()], distribution="fake-reuse")
    exc = _raise_from(lambda: NonSaturating().discriminator(None, None, None))  # fails inside gankit_plugins
    assert culprit(exc, reg) is None


def test_quiet_training_hides_a_plugins_own_progress_bar(monkeypatch):
    """The image check's bar asks gankit.progress_bars(): false inside train(progress=False)
    (what `gankit train -q` passes), true elsewhere; stderr must also be a terminal."""
    from gankit.monitor import progress_bars_allowed
    from gankit_plugins.image_datasets import _CheckProgress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert gankit.progress_bars() is True
    assert _CheckProgress(10, "checking").enabled is True
    with progress_bars_allowed(False):
        assert gankit.progress_bars() is False
        assert _CheckProgress(10, "checking").enabled is False
    assert _CheckProgress(10, "checking").enabled is True


def test_train_passes_its_progress_setting_to_the_plugins(monkeypatch, tmp_path):
    seen = []
    import gankit.training

    real_build = gankit.training.build

    def spy(*args, **kwargs):
        seen.append(gankit.progress_bars())
        return real_build(*args, **kwargs)

    monkeypatch.setattr(gankit.training, "build", spy)
    for progress in (False, True):
        gankit.train(preset="ring8", progress=progress,
                     overrides=["backend=torch", "training.steps=2", "evaluation.every=0", "training.tensorboard=false",
                                f"output.dir={tmp_path}", f"output.name=r{int(progress)}"])
    assert seen == [False, True]
    assert gankit.progress_bars() is True


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_a_loss_failing_on_its_first_call_is_named_on_every_backend(site, capsys, backend):
    """A compiled step (TensorFlow's tf.function, JAX's jit) calls the loss while it traces:
    the plugin's frame is still in the traceback, so it is still named."""
    pytest.importorskip(backend)
    source = site / "site" / "fake_flaky.py"
    source.write_text(source.read_text().replace("FAIL_AT = 7", "FAIL_AT = 1"))
    args = [f"backend={backend}" if a == "backend=torch" else a for a in _train_args(site)]
    code = main(args)
    err = capsys.readouterr().err
    lines = _lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: the loss 'flaky' (plugin 'fake_flaky' from distribution 'fake-flaky') "
                               "failed at step 1: ValueError: flaky loss gave up (at "), err
    assert "fake_flaky.py:" in lines[0] and "no checkpoint was written; once fixed, then start it again" in lines[0]
