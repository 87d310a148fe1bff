import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def available_backends():
    import importlib.util

    return [b for b, mod in (("torch", "torch"), ("tensorflow", "tensorflow")) if importlib.util.find_spec(mod)]


@pytest.fixture(params=["torch", "tensorflow"])
def backend_name(request):
    pytest.importorskip(request.param)
    return request.param
