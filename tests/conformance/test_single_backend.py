"""The conformance suite on a native, torch-only architecture (tests/architectures/native_plugin.py):
its checks run on torch and pass, the TensorFlow and cross-backend ones are not applicable
with a reason saying single-backend, and the report and the CLI say so. The torch checks
are real: native mutants fail them."""

import importlib.metadata as md
import json
import sys
from pathlib import Path

import pytest

import gankit
from gankit.cli import main
from gankit.conformance import Suite

pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "architectures"))
import native_plugin  # noqa: E402

TORCH_CHECKS = ("architecture.shapes_dtypes", "architecture.parameter_count", "architecture.trains",
                "architecture.checkpoint_round_trip")
ACROSS_CHECKS = ("architecture.parameter_count_agrees", "architecture.same_function")


# -- mutants: native architectures whose torch checks must fail ----------------------
def _dead(params, **kwargs):
    """pixel_shuffle with a generator that cannot learn: its output is multiplied by zero,
    so its parameters get zero gradients."""
    from torch import nn

    inner = native_plugin.build_torch(params, **kwargs)
    if kwargs["role"] != "generator":
        return inner

    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * 0.0

    return Dead()


def _unsaved_noise(params, **kwargs):
    """pixel_shuffle whose generator adds a random offset kept out of its state_dict: a
    checkpoint cannot restore it."""
    import torch
    from torch import nn

    inner = native_plugin.build_torch(params, **kwargs)
    if kwargs["role"] != "generator":
        return inner

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.register_buffer("offset", torch.randn(kwargs["output_shape"]), persistent=False)

        def forward(self, x):
            return self.inner(x) + self.offset

    return Noisy()


def _unsaved_statistics(params, **kwargs):
    """pixel_shuffle whose generator keeps its batch-norm running statistics out of its
    state_dict: a checkpoint of an untrained generator loses nothing (the statistics are
    still their initial values), of a trained one it loses what training moved."""
    net = native_plugin.build_torch(params, **kwargs)
    if kwargs["role"] == "generator":
        norm = net[5]
        for name in ("running_mean", "running_var"):
            norm.register_buffer(name, getattr(norm, name), persistent=False)
    return net


class Mutants:
    @gankit.hookimpl
    def gankit_register_architectures(self):
        hint = {"conformance": {"data_shape": (1, 8, 8)}}
        return [gankit.ArchitectureRecord(name=name, params=native_plugin.PixelShuffleParams,
                                          native={"torch": builder}, metadata=hint)
                for name, builder in (("dead_generator", _dead), ("unsaved_noise", _unsaved_noise),
                                              ("unsaved_statistics", _unsaved_statistics))]


@pytest.fixture(scope="module")
def registry():
    builtins = [ep.load() for ep in md.entry_points(group="gankit")
                if ep.dist and ep.dist.metadata["Name"] == "gankit"]
    return gankit.Registry.from_plugins([*builtins, native_plugin, Mutants()], distribution="native-example")


@pytest.fixture(scope="module")
def report(registry, both_backends):
    return Suite(registry=registry, backends=both_backends, architectures=["pixel_shuffle"]).run()


def test_its_torch_checks_run_and_pass(report):
    assert report.ok, [r.to_json() for r in report.failures]
    for check in TORCH_CHECKS:
        (result,) = report.find(check=check, subject="pixel_shuffle", backend="torch")
        assert result.status == "pass", result


def test_tensorflow_and_cross_backend_checks_are_single_backend_not_applicable(report):
    for check in TORCH_CHECKS:
        (result,) = report.find(check=check, subject="pixel_shuffle", backend="tensorflow")
        assert result.status == "n/a"
        assert result.detail == ("single-backend: architecture 'pixel_shuffle' is built natively for torch only, "
                                 "not tensorflow")
    for check in ACROSS_CHECKS:
        (result,) = report.find(check=check, subject="pixel_shuffle", backend="across")
        assert result.status == "n/a"
        assert result.detail.startswith("single-backend: architecture 'pixel_shuffle' is built natively for torch "
                                        "only; there is nothing to compare across backends")


def test_the_report_names_it_single_backend(report, tmp_path):
    assert report.header["single_backend"] == {"pixel_shuffle": ["torch"]}
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["single_backend"] == {"pixel_shuffle": ["torch"]}
    assert data["summary"] == {"pass": 4, "fail": 0, "n/a": 6}


def test_with_torch_alone_the_reason_is_still_single_backend(registry):
    report = Suite(registry=registry, backends=["torch"], architectures=["pixel_shuffle"],
                   checks=["architecture.same_function"]).run()
    (result,) = report.results
    assert result.status == "n/a" and result.detail.startswith("single-backend:")


def test_the_cli_prints_single_backend(registry, monkeypatch, capsys, both_backends):
    import gankit.plugins

    monkeypatch.setattr(gankit.plugins, "_REGISTRY", registry)
    rc = main(["conformance", "--backend", "torch", "--backend", "tensorflow", "--architecture", "pixel_shuffle",
               "--check", "architecture.shapes_dtypes", "--check", "architecture.same_function"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "architecture pixel_shuffle: single-backend, built for torch only" in out
    assert "not applicable" in out
    assert "single-backend: architecture 'pixel_shuffle' is built natively for torch only, not tensorflow" in out
    assert "0 failed, 1 passed, 2 not applicable" in out


@pytest.mark.parametrize("name, check, message", [
    ("dead_generator", "architecture.trains", "changed none of the 8 generator parameters"),
    ("unsaved_noise", "architecture.checkpoint_round_trip", "generate(z) differs after the round trip"),
    ("unsaved_statistics", "architecture.checkpoint_round_trip", "generate(z) differs after the round trip"),
])
def test_a_broken_native_architecture_fails_its_torch_check(registry, name, check, message):
    report = Suite(registry=registry, backends=["torch"], architectures=[name]).run()
    assert report.failed_checks(name) == {check}, [r.to_json() for r in report.failures]
    (result,) = report.find(check=check, subject=name, status="fail")
    assert message in result.detail


def test_the_round_trip_run_alone_trains_first_and_still_catches_lost_statistics(registry):
    # In a full run the round trip saves the weights architecture.trains moved; run alone
    # it takes that training step itself: lost batch-norm statistics show either way.
    report = Suite(registry=registry, backends=["torch"], architectures=["unsaved_statistics", "pixel_shuffle"],
                   checks=["architecture.checkpoint_round_trip"]).run()
    assert report.failed_checks() == {"architecture.checkpoint_round_trip"}
    (result,) = report.failures
    assert result.subject == "unsaved_statistics" and "generate(z) differs after the round trip" in result.detail
