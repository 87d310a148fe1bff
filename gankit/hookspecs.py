"""The whole plugin contract of gankit, in one module.

A plugin is a Python module (or object) with functions named after these hooks and
marked with :data:`gankit.hookimpl`. It registers through the ``gankit`` entry-point
group in its distribution's ``pyproject.toml``::

    [project.entry-points.gankit]
    my_losses = "my_package.gankit_plugin"

Each hook returns a list of small typed records (:mod:`gankit.records`): a name, the
pydantic model its ``params`` are validated against, and a factory (or, for a native
architecture, a builder per backend). Hooks take no
arguments; they are called once, when the registry is first used.

Hooks are grouped by what they provide: the backend first, then the pieces of a model
(losses, regularizers, architectures), then data, then evaluation (metrics and the
feature extractors they use).
"""

from __future__ import annotations

import pluggy

from gankit.records import (
    ArchitectureRecord,
    BackendRecord,
    DatasetRecord,
    FeatureExtractorRecord,
    LossRecord,
    MetricRecord,
    RegularizerRecord,
)

PROJECT = "gankit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- backends -------------------------------------------------------------------
@hookspec
def gankit_register_backends() -> list[BackendRecord]:
    """Return the backends this plugin provides.

    The factory must not import its framework until it is called, so that listing
    plugins stays fast and works without the framework installed::

        @hookimpl
        def gankit_register_backends():
            def make():
                from my_backend.backend import MyBackend
                return MyBackend()
            return [BackendRecord(name="jax", factory=make, requires=("jax",), extra="jax")]
    """


# -- model pieces ---------------------------------------------------------------
@hookspec
def gankit_register_losses() -> list[LossRecord]:
    """Return the losses this plugin provides.

    ``factory(params)`` receives the validated params model and returns a
    :class:`gankit.Loss`::

        class FocalParams(gankit.StrictModel):
            gamma: float = 2.0
            '''Focusing strength.'''

        @hookimpl
        def gankit_register_losses():
            return [LossRecord(name="focal", params=FocalParams, factory=FocalLoss)]
    """


@hookspec
def gankit_register_regularizers() -> list[RegularizerRecord]:
    """Return the regularizers (discriminator penalties) this plugin provides::

        @hookimpl
        def gankit_register_regularizers():
            return [RegularizerRecord(name="r1", params=R1Params, factory=R1)]
    """


@hookspec
def gankit_register_architectures() -> list[ArchitectureRecord]:
    """Return the architectures this plugin provides.

    ``factory(params, role=, input_shape=, output_shape=)`` returns a
    :class:`gankit.NetSpec`; ``role`` is ``"generator"`` or ``"discriminator"``::

        @hookimpl
        def gankit_register_architectures():
            return [ArchitectureRecord(name="mlp", params=MLPParams, factory=build_mlp)]

    An architecture that needs a layer the vocabulary lacks gives, instead of a factory,
    a native builder for one backend: same signature, returning that framework's own
    model (a ``torch.nn.Module``; a ``tf.Module`` or Keras layer). The builder imports
    its framework when called, never at module level. Such an architecture builds only
    on that backend (its checkpoints load only there, other backends refuse it in one
    line) and the conformance suite reports it as single-backend::

        def build_torch(params, *, role, input_shape, output_shape):
            ...  # import torch here, build and return a torch.nn.Module

        @hookimpl
        def gankit_register_architectures():
            return [ArchitectureRecord(name="shuffle", params=P, native={"torch": build_torch})]
    """


# -- data -----------------------------------------------------------------------
@hookspec
def gankit_register_datasets() -> list[DatasetRecord]:
    """Return the datasets this plugin provides.

    ``factory(params, seed=)`` returns a :class:`gankit.Dataset`::

        @hookimpl
        def gankit_register_datasets():
            return [DatasetRecord(name="ring8", params=RingParams, factory=make_ring)]
    """


# -- evaluation -----------------------------------------------------------------
@hookspec
def gankit_register_metrics() -> list[MetricRecord]:
    """Return the sample-quality metrics this plugin provides.

    ``factory(params)`` returns a :class:`gankit.metrics.Metric`: it declares its output
    keys in ``meta`` and computes them from an :class:`gankit.metrics.EvalContext`
    (generated and real samples, cached features)::

        class Coverage(gankit.Metric):
            meta = gankit.MetricMeta(keys={"coverage": True})

            def __call__(self, ctx):
                real, fake = ctx.features("real"), ctx.features("fake")
                return {"coverage": my_coverage(real, fake)}

        @hookimpl
        def gankit_register_metrics():
            return [MetricRecord(name="coverage", factory=Coverage)]
    """


@hookspec
def gankit_register_feature_extractors() -> list[FeatureExtractorRecord]:
    """Return the feature extractors (sample -> feature vector, optionally class
    probabilities) this plugin provides for metrics.

    ``factory(params)`` returns a :class:`gankit.metrics.FeatureExtractor`. A plugin
    never imports a framework at module level; an extractor that needs one imports it
    in its factory and names it in ``requires``::

        @hookimpl
        def gankit_register_feature_extractors():
            return [FeatureExtractorRecord(name="pixels", factory=Pixels)]
    """


HOOK_KINDS = {
    "gankit_register_backends": "backend",
    "gankit_register_losses": "loss",
    "gankit_register_regularizers": "regularizer",
    "gankit_register_architectures": "architecture",
    "gankit_register_datasets": "dataset",
    "gankit_register_metrics": "metric",
    "gankit_register_feature_extractors": "feature_extractor",
}
