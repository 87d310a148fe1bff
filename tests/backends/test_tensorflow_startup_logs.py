"""TensorFlow's start-up log lines (absl's pre-init banner, oneDNN's I-line) are silenced;
warnings, errors and exceptions of the import are not."""

import importlib.util
import os
import subprocess
import sys

import pytest

from gankit_tensorflow import _noise, filtered_stderr

BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (b"I0000 00:00:1796411586.621130    7451 port.cc:153] oneDNN custom operations are on. You may see "
          b"slightly different numerical results\n")


def test_noise_is_the_banner_and_info_lines_only():
    assert _noise(BANNER) and _noise(ONEDNN)
    assert _noise(b"I1204 19:13:10.123456   12 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n")
    assert not _noise(b"W0000 00:00:1796411586.621130    7451 gpu_device.cc:2] Cannot dlopen some GPU libraries.\n")
    assert not _noise(b"E0000 00:00:1796411586.621130    7451 cuda_executor.cc:1] failed call to cuInit\n")
    assert not _noise(b"ImportError: libfoo.so: cannot open shared object file\n")
    assert not _noise(b"Information: I0000 is a code\n")


def test_filtered_stderr_drops_the_noise_and_keeps_the_rest(capfd):
    with filtered_stderr():
        os.write(2, BANNER + ONEDNN + b"W0000 00:00:1.0 1 x.cc:1] a real warning\n" + ONEDNN)
        os.write(2, b"plain text\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "W0000 00:00:1.0 1 x.cc:1] a real warning\nplain text\nafter\n"


def test_filtered_stderr_restores_stderr_when_the_import_fails(capfd):
    with pytest.raises(ImportError, match="libfoo"):
        with filtered_stderr():
            os.write(2, BANNER + b"F0000 00:00:1.0 1 x.cc:1] fatal: libfoo missing\n")
            raise ImportError("libfoo.so: cannot open shared object file")
    os.write(2, b"stderr is back\n")
    assert capfd.readouterr().err == "F0000 00:00:1.0 1 x.cc:1] fatal: libfoo missing\nstderr is back\n"


def _import_tensorflow(env):
    code = "import gankit_tensorflow.ops, tensorflow as tf; print(tf.constant(2.0).numpy())"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GANKIT_DEBUG")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_importing_the_backend_prints_no_startup_lines():
    done = _import_tensorflow({})
    assert done.returncode == 0 and done.stdout.strip() == "2.0", done.stderr
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr
