"""`gankit sample` draws from the EMA generator of a run that keeps one, on either backend."""

import subprocess
import sys

import numpy as np
import pytest

from gankit import checkpoint
from gankit.restore import latents

from training_helpers import tiny


@pytest.mark.slow
def test_sample_uses_the_ema_generator(tmp_path, backend_name):
    run = tiny(tmp_path, backend_name, "training.ema_decay=0.9", name="ema", steps=10)
    manifest, weights = checkpoint.load(run.directory)
    assert manifest.ema and any(k.startswith("generator_ema.") for k in weights)
    out = tmp_path / "s.npy"
    proc = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.directory), "-n", "16", "--seed", "3",
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    z = latents(16, 2, seed=3)
    np.testing.assert_allclose(got, run.trainer.generate(z), rtol=1e-5, atol=1e-6)  # the trainer samples from its EMA
    # ... which is not the raw generator: rebuild one without EMA from the same weights.
    from gankit.restore import load_checkpoint

    gan = load_checkpoint(run.directory, device="cpu")
    raw = {k: v for k, v in weights.items() if not k.startswith("generator_ema.")}
    plain = run.trainer.__class__(gan.trainer.setup.__class__(**{**gan.trainer.setup.__dict__, "ema_decay": 0.0}))
    plain.load_state_dict(raw)
    assert not np.allclose(got, plain.generate(z))
