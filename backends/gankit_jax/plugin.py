"""Registers the JAX backend, as a third-party distribution would; importing this module
does not import jax."""

from __future__ import annotations

import gankit


def _make_backend():
    from gankit_jax.backend import JaxBackend

    return JaxBackend()


@gankit.hookimpl
def gankit_register_backends():
    return [
        gankit.BackendRecord(
            name="jax",
            factory=_make_backend,
            requires=("jax", "optax"),
            extra="jax",
            description="JAX: a jitted step (jax + optax)",
        )
    ]
