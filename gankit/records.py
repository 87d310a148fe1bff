"""The small typed records plugin hooks return: a name, a params model, a factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

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
    """An architecture. ``factory(params, role=..., input_shape=..., output_shape=...)``
    returns a :class:`gankit.nets.NetSpec`; a ``conditional`` one is also given
    ``num_classes=`` (the labelled dataset's class count, ``None`` when there is none)."""

    kind: ClassVar[str] = "architecture"
    roles: tuple[Literal["generator", "discriminator"], ...] = ("generator", "discriminator")
    #: Class-conditional: its nets read class labels (training needs a labelled dataset).
    conditional: bool = False
    #: The backends that can build it, when not all: an architecture with a native
    #: builder for one backend (a layer the vocabulary lacks) names that backend here,
    #: and the conformance suite reports it as single-backend. ``None``: every backend
    #: (a pure neutral spec).
    backends: tuple[str, ...] | None = None


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
