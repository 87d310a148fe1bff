"""Hypothesis strategies and the two profiles the suite runs under.

``ci`` is derandomised (each case draws from a seed fixed by its id), small and
without shrinking, so a run repeats exactly and stays fast; ``thorough`` draws fresh
examples every run, many more of them, and shrinks a failure to a minimal example.
Profiles are applied to the suite's own properties only: loading them never changes
the settings of a user's hypothesis tests.
"""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

PROFILES = {
    "ci": dict(max_examples=6, derandomize=True, phases=(Phase.explicit, Phase.generate)),
    "thorough": dict(max_examples=150, derandomize=False,
                     phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink)),
}
#: Low-precision dtypes are slower to compare meaningfully; they get this share of examples.
LOW_PRECISION_SHARE = 0.5

_COMMON = dict(database=None, deadline=None, print_blob=False, report_multiple_bugs=False,
               suppress_health_check=list(HealthCheck))

for _name, _options in PROFILES.items():
    settings.register_profile(f"gankit-{_name}", **_COMMON, **_options)


def profile_settings(profile: str, examples: int | None = None) -> settings:
    if profile not in PROFILES:
        raise ValueError(f"unknown conformance profile {profile!r}; known: {', '.join(PROFILES)}")
    options = {**_COMMON, **PROFILES[profile]}
    if examples is not None:
        options["max_examples"] = max(1, int(examples))
    return settings(**options)


def run_property(strategy, body, *, profile: str, key: str, examples: int | None = None) -> None:
    """Run ``body(example)`` for examples of ``strategy``; the first failure propagates.

    Under a derandomised profile the examples are fixed by ``key`` (the case id), so
    every case draws its own, reproducible examples.
    """

    def prop(example):
        body(example)

    test = settings(profile_settings(profile, examples))(given(strategy)(prop))
    if PROFILES[profile]["derandomize"]:
        test = seed(zlib.crc32(key.encode()))(test)
    test()


def draw_examples(strategy, *, profile: str, key: str, examples: int) -> list:
    """``examples`` examples of ``strategy``, drawn by hypothesis under ``profile`` with
    a seed fixed by ``key``: the derandomised profile draws each example set once and
    the suite replays it on every backend and subject that shares the key."""
    out: list = []

    def collect(example):
        out.append(example)

    test = settings(profile_settings(profile, examples))(given(strategy)(collect))
    seed(zlib.crc32(key.encode()))(test)()
    return out


def floats(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def vector(n: int, lo: float, hi: float):
    """A float64 array of ``n`` elements in [lo, hi] (drawn as a list: cheaper than
    ``hypothesis.extra.numpy.arrays`` and just as good at edge values)."""
    return st.lists(floats(lo, hi), min_size=n, max_size=n).map(lambda xs: np.array(xs, dtype=np.float64))


@st.composite
def logit_batches(draw, bound: float, equal: bool, min_size: int = 1, max_size: int = 8,
                  real_range=None, fake_range=None):
    """``(real_logits, fake_logits)``: 1-d float64 arrays of batch sizes in
    [min_size, max_size], equal sizes when the loss pairs samples one to one."""
    n = draw(st.integers(min_size, max_size))
    m = n if equal else draw(st.integers(min_size, max_size))
    rlo, rhi = real_range or (-bound, bound)
    flo, fhi = fake_range or (-bound, bound)
    return draw(vector(n, rlo, rhi)), draw(vector(m, flo, fhi))


@st.composite
def permuted_batches(draw, bound: float, equal: bool):
    """Logit batches of at least two samples and a permutation of each."""
    real, fake = draw(logit_batches(bound, equal, min_size=2))
    return real, fake, np.array(draw(st.permutations(range(len(real))))), np.array(draw(st.permutations(range(len(fake)))))
