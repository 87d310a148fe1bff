"""The torch backend's inception_v3 feature extractor: wiring only, on random weights
(gankit downloads nothing; the real weights are the user's file)."""

import numpy as np
import pytest

import gankit

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def random_state():
    from gankit_torch.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_architecture_matches_the_fid_inception_network():
    from gankit_torch.inception import FIDInceptionV3

    model = FIDInceptionV3()
    # torchvision's InceptionV3 without the aux head, with 1008 classes, as pytorch-fid builds it
    assert sum(p.numel() for p in model.parameters()) == 23_850_960
    names = set(model.state_dict())
    assert {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.running_var",
            "fc.weight"} <= names
    assert not any(n.startswith("AuxLogits") for n in names)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_loads_and_features_come_out(tmp_path, random_state, suffix):
    path = tmp_path / f"inception{suffix}"
    if suffix == ".pth":
        torch.save(random_state, path)  # the pytorch-fid file format: a plain state dict
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in random_state.items() if "num_batches" not in k}, str(path))
    record = gankit.get_registry().get("feature_extractor", "inception_v3").record
    ext = record.factory(record.params(weights=str(path), batch_size=2, size=75))  # 299 is the default; wiring is the point
    ext.check((1, 28, 28), "images")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    feats = ext.features(x)
    probs = ext.probabilities(x)
    assert feats.shape == (3, 2048) and probs.shape == (3, 1008)
    assert np.isfinite(feats).all() and (feats >= 0).all()  # post-ReLU average pool
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
    # the same image gives the same features whatever its batch
    np.testing.assert_allclose(ext.features(x[1:2].copy())[0], feats[1], rtol=1e-4, atol=1e-5)
    # grayscale is the same image repeated over RGB
    np.testing.assert_allclose(ext.features(np.repeat(x[:1], 3, axis=1))[0], feats[0], rtol=1e-4, atol=1e-5)


def test_missing_weights_are_one_clear_line(tmp_path, monkeypatch, random_state):
    from gankit_torch.features import WEIGHTS_ENV

    record = gankit.get_registry().get("feature_extractor", "inception_v3").record
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(gankit.DataError, match="needs a weights file"):
        record.factory(record.params())
    with pytest.raises(gankit.DataError, match="does not exist"):
        record.factory(record.params(weights=str(tmp_path / "nope.pth")))
    broken = dict(random_state)
    del broken["Mixed_6b.branch7x7_2.conv.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "broken.pth"))
    with pytest.raises(gankit.DataError, match="'Mixed_6b.branch7x7_2.conv.weight' is missing"):
        record.factory(record.params())
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(gankit.DataError, match="cannot be read"):
        record.factory(record.params(weights=str(tmp_path / "junk.pth")))


def test_registering_it_imports_no_framework():
    import subprocess
    import sys

    code = "import sys, gankit_torch.features; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
