"""The quality benchmark as a test (outside the default run: `pytest tests/benchmarks/test_quality_toys.py -s`).

Trains the ring8 and grid25 presets over 5 seeds on every installed backend and asserts
the targets: all modes captured, >= 95% high-quality samples, <= 2 minutes of CPU per run.
"""

import pytest

from quality_toys import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("toy", ["ring8", "grid25"])
def test_quality_targets(toy):
    assert main(["--toys", toy]) == 0, "a run missed a mode, fell below 95% high quality, or took over 2 minutes of CPU"
