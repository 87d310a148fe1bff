"""Fixtures of the training-engine tests."""

import pytest

from gankit import training
from training_helpers import Interrupted


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(k)``: the next training run stops (raises Interrupted) after step k;
    the returned function disarms it."""

    def arm(k):
        real = training.evaluation.maybe_evaluate

        def maybe_evaluate(exp, step, *args, **kwargs):  # called by the loop after every step
            if step == k:
                raise Interrupted(step)
            return real(exp, step, *args, **kwargs)

        monkeypatch.setattr(training.evaluation, "maybe_evaluate", maybe_evaluate)
        return lambda: monkeypatch.setattr(training.evaluation, "maybe_evaluate", real)

    return arm
