"""The small typed records plugin hooks return: a name, a params model, a factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional

from pydantic import BaseModel

from gankit.protocol import NoParams


@dataclass(frozen=True)
class PluginRecord:
    """One registered plugin.

    ``params`` is the pydantic model the config's ``params`` table is validated
    against; ``factory(params)`` builds the object.
    """

    kind: ClassVar[str] = "plugin"

    name: str
    factory: Callable[..., Any]
    params: type[BaseModel] = NoParams
    description: str = ""
    #: Free-form facts shown by ``gankit plugins`` (family, paper, ...).
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"plugin name {self.name!r} must be letters, digits, '_' or '-'")
        if not (isinstance(self.params, type) and issubclass(self.params, BaseModel)):
            raise TypeError(f"{self.kind} {self.name!r}: params must be a pydantic model class")
        if not callable(self.factory):
            raise TypeError(f"{self.kind} {self.name!r}: factory must be callable")


@dataclass(frozen=True)
class BackendRecord(PluginRecord):
    """A backend. ``factory()`` returns a :class:`gankit.protocol.Backend`;
    ``requires`` names the modules that must be importable for it to work."""

    kind: ClassVar[str] = "backend"
    requires: tuple[str, ...] = ()
    #: Name of the extra that installs the framework (for error messages).
    extra: str = ""


@dataclass(frozen=True)
class LossRecord(PluginRecord):
    """A loss. ``factory(params)`` returns a :class:`gankit.protocol.Loss`."""

    kind: ClassVar[str] = "loss"


@dataclass(frozen=True)
class RegularizerRecord(PluginRecord):
    """A regularizer. ``factory(params)`` returns a :class:`gankit.protocol.Regularizer`."""

    kind: ClassVar[str] = "regularizer"


@dataclass(frozen=True)
class ArchitectureRecord(PluginRecord):
    """An architecture: a neutral spec every backend builds, or a native model for one.

    *A neutral spec* (the usual kind): ``factory(params, role=..., input_shape=...,
    output_shape=...)`` returns a :class:`gankit.nets.NetSpec` built from the layer
    vocabulary; every backend builds it and checkpoints move between backends.

    *A native model*, for a layer the vocabulary lacks: leave ``factory`` out and give
    ``native={"torch": build}``, a builder per backend with the factory's signature that
    returns that framework's own model — a ``torch.nn.Module`` called as ``model(x)``;
    a ``tf.Module`` (or Keras layer) called as ``model(x, training=...)`` — with
    ``model(x, labels, ...)`` for a class-conditional one. The generator maps
    ``(batch, *input_shape)`` latents to ``(batch, *output_shape)`` samples, the
    discriminator samples to ``(batch, 1)`` logits. The record's factory then returns a
    :class:`gankit.NativeNet` describing the network; the backend calls the builder. Such
    an architecture builds only on the backends in ``native`` (``backends`` is filled
    in from them): another backend refuses it with one line, its checkpoints load only
    there, and the conformance suite reports it as single-backend.

    A ``conditional`` architecture's factory and builders are also given
    ``num_classes=`` (the labelled dataset's class count; without data, the
    ``num_classes`` param when there is one).
    """

    kind: ClassVar[str] = "architecture"
    #: The neutral factory (None for a native architecture: gankit makes one).
    factory: Optional[Callable[..., Any]] = None
    roles: tuple[Literal["generator", "discriminator"], ...] = ("generator", "discriminator")
    #: Class-conditional: its nets read class labels (training needs a labelled dataset).
    conditional: bool = False
    #: The backends that can build it, when not all: the keys of ``native`` for a
    #: native architecture. ``None``: every backend (a pure neutral spec).
    backends: Optional[tuple[str, ...]] = None
    #: Native builders by backend name (see above); ``None`` for a neutral spec.
    native: Optional[Mapping[str, Callable[..., Any]]] = None

    def __post_init__(self):
        if self.native is not None:
            if self.factory is not None:
                raise TypeError(f"architecture {self.name!r}: give a factory (a neutral spec) or native builders, "
                                "not both")
            if not self.native or not all(isinstance(k, str) and callable(v) for k, v in self.native.items()):
                raise TypeError(f"architecture {self.name!r}: native must map backend names to builder callables")
            native = MappingProxyType(dict(self.native))
            if self.backends is not None and set(self.backends) != set(native):
                raise TypeError(f"architecture {self.name!r}: backends {tuple(self.backends)} differ from the "
                                f"backends of its native builders {tuple(native)}")
            object.__setattr__(self, "native", native)
            object.__setattr__(self, "backends", tuple(self.backends or native))
            object.__setattr__(self, "factory", _NativeFactory(self))
        elif self.factory is None:
            raise TypeError(f"architecture {self.name!r}: give a factory returning a NetSpec, or native builders")
        if self.backends is not None:
            if not self.backends or not all(isinstance(b, str) and b for b in self.backends):
                raise TypeError(f"architecture {self.name!r}: backends must be a non-empty tuple of backend names")
            object.__setattr__(self, "backends", tuple(self.backends))
        super().__post_init__()

    def builds_on(self, backend: str) -> bool:
        """Whether ``backend`` can build this architecture (every backend, for a neutral spec)."""
        return self.backends is None or backend in self.backends


class _NativeFactory:
    """The factory of a native architecture: returns a :class:`gankit.NativeNet` bound to its record."""

    def __init__(self, record: "ArchitectureRecord"):
        self.record = record

    def __repr__(self) -> str:
        return f"<native factory of architecture {self.record.name!r}>"

    def __call__(self, params, *, role, input_shape, output_shape, num_classes=None):
        from gankit.native import NativeNet

        rec = self.record
        if role not in rec.roles:
            raise ValueError(f"architecture {rec.name!r} cannot be a {role}")
        if rec.conditional:
            num_classes = num_classes if num_classes is not None else getattr(params, "num_classes", None)
            if num_classes is None:
                raise ValueError(f"architecture {rec.name!r} is class-conditional and needs num_classes")
        else:
            num_classes = None
        dumped = params.model_dump(mode="json") if isinstance(params, BaseModel) else dict(params or {})
        net = NativeNet(name=f"{rec.name}_{role}", architecture=rec.name, backends=rec.backends, role=role,
                        params=dumped, input_shape=tuple(input_shape), output_shape=tuple(output_shape),
                        num_classes=num_classes)
        return net.attach(rec)


@dataclass(frozen=True)
class DatasetRecord(PluginRecord):
    """A dataset. ``factory(params, seed=...)`` returns a :class:`gankit.data.Dataset`."""

    kind: ClassVar[str] = "dataset"


@dataclass(frozen=True)
class MetricRecord(PluginRecord):
    """A sample-quality metric. ``factory(params)`` returns a :class:`gankit.metrics.Metric`."""

    kind: ClassVar[str] = "metric"


@dataclass(frozen=True)
class FeatureExtractorRecord(PluginRecord):
    """A feature extractor for metrics. ``factory(params)`` returns a
    :class:`gankit.metrics.FeatureExtractor`; like a backend's, the factory imports any
    framework it needs only when called, and ``requires`` names those modules."""

    kind: ClassVar[str] = "feature_extractor"
    requires: tuple[str, ...] = ()


RECORD_TYPES: dict[str, type[PluginRecord]] = {
    cls.kind: cls
    for cls in (BackendRecord, LossRecord, RegularizerRecord, ArchitectureRecord, DatasetRecord,
                MetricRecord, FeatureExtractorRecord)
}
