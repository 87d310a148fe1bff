import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# jax on one CPU thread (XLA's Eigen pool off), read when its runtime starts.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


def available_backends():
    import importlib.util

    return [b for b, mod in (("torch", "torch"), ("tensorflow", "tensorflow"), ("jax", "jax"))
            if importlib.util.find_spec(mod)]


@pytest.fixture(params=["torch", "tensorflow", "jax"])
def backend_name(request):
    pytest.importorskip(request.param)
    return request.param
