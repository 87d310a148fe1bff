"""Architectures built natively for one backend: for a layer the vocabulary lacks.

Most architectures are a :class:`gankit.NetSpec` that every backend builds. An
architecture that needs a layer the vocabulary does not have (``nn.PixelShuffle``,
``GroupNorm``, ...) may instead give a *native builder* for one backend
(``ArchitectureRecord(native={"torch": build})``). Its record's factory then returns a
:class:`NativeNet`: the neutral description of the network (which architecture, which
params, which role, its input and output shapes), not the network itself. The backend
named in it calls the installed plugin's builder, gets the framework's own model and
wraps it so that it trains, samples and checkpoints like a spec-built net:

* canonical weight names are the model's own (``named_parameters`` / ``state_dict``
  names on torch, attribute paths of a ``tf.Module``'s variables on TensorFlow);
  the backend records them, with their shapes, on the :class:`NativeNet` when it first
  builds it, so a checkpoint's manifest lists them and loading verifies the weights
  before any model is built. Loading runs the installed plugin's builder, never code
  from the file;
* initial weights are the model's own initialisation, drawn from the framework's
  generator seeded with the run's seed (``training.init`` applies to spec nets only);
* other backends refuse it with one line naming the backends that can build it, and
  the conformance suite reports it as single-backend.

Such a checkpoint is not portable: it loads only on the backend that built it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Iterator, Literal, Optional

from pydantic import Field, PrivateAttr, SerializeAsAny, WrapValidator

from gankit.errors import CheckpointError, ConfigError
from gankit.nets import NetSpec
from gankit.protocol import StrictModel

Shape = tuple[int, ...]


def not_built_on(architecture: str, backends, backend: str, native: bool = True) -> str:
    """The one line saying that ``architecture`` cannot be built on ``backend``."""
    only = " and ".join(backends)
    how = "is built natively for" if native else "builds on"
    return f"architecture {architecture!r} {how} {only} only; the {backend} backend cannot build it"


def switch_hint(backends) -> str:
    return (f"train it with --set backend={backends[0]}, or choose an architecture every backend builds: "
            "see `gankit plugins --kind architecture`")


class NativeNet(StrictModel):
    """A network that a plugin builds natively for one backend, described neutrally.

    Made by the factory of an :class:`~gankit.ArchitectureRecord` with ``native``
    builders; used wherever a :class:`gankit.NetSpec` is (trainer setup, checkpoint
    manifest). :meth:`build` calls the plugin's builder; only a backend calls it.
    """

    kind: Literal["native"] = "native"
    """Marks a native net in checkpoint manifests."""
    name: str
    """A label for messages and checkpoints (``<architecture>_<role>``)."""
    architecture: str
    """The registered architecture whose builder makes the network."""
    backends: tuple[str, ...] = Field(min_length=1)
    """The backends with a builder for it."""
    role: Literal["generator", "discriminator"]
    """Which network of the GAN it is."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The architecture's validated params (JSON), handed to the builder."""
    input_shape: tuple[int, ...]
    """Shape of one input sample, excluding the batch axis."""
    output_shape: tuple[int, ...]
    """Shape of one output, excluding the batch axis (the backend checks the model's)."""
    num_classes: Optional[int] = Field(default=None, gt=1)
    """Classes of the label input of a class-conditional net (None: unconditional)."""
    parameters: dict[str, tuple[int, ...]] = Field(default_factory=dict)
    """Trainable parameters by canonical name (the model's own), recorded by the backend."""
    buffers: dict[str, tuple[int, ...]] = Field(default_factory=dict)
    """Floating-point buffers (batch-norm statistics, ...) by canonical name, recorded by the backend."""

    _record: Any = PrivateAttr(default=None)

    # -- what the rest of gankit reads of a net spec ---------------------------------
    @property
    def conditional(self) -> bool:
        """Whether the net reads class labels."""
        return self.num_classes is not None

    @property
    def layers(self) -> list:
        """No vocabulary layers: the model is the plugin's own."""
        return []

    def walk(self) -> Iterator:
        return iter(())

    def shapes(self) -> list[Shape]:
        return [tuple(self.input_shape), tuple(self.output_shape)]

    def parameter_shapes(self) -> dict[str, Shape]:
        return {k: tuple(v) for k, v in self.parameters.items()}

    def buffer_shapes(self) -> dict[str, Shape]:
        return {k: tuple(v) for k, v in self.buffers.items()}

    def parameter_count(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes().values())

    # -- for backends -----------------------------------------------------------------
    def attach(self, record) -> "NativeNet":
        """Bind the installed :class:`~gankit.ArchitectureRecord` whose builders make it."""
        self._record = record
        return self

    def build(self, backend: str):
        """The framework's own model, from the plugin's builder for ``backend``:
        ``builder(params, role=, input_shape=, output_shape=)`` (and ``num_classes=``
        for a class-conditional architecture)."""
        if backend not in self.backends:
            raise ConfigError(not_built_on(self.architecture, self.backends, backend), hint=switch_hint(self.backends))
        record = self._record
        if record is None:
            raise ConfigError(f"the native {self.role} of architecture {self.architecture!r} is not bound to its "
                              "plugin", hint="build it through gankit.train or gankit.load_checkpoint")
        builders = getattr(record, "native", None) or {}
        if backend not in builders:
            raise ConfigError(not_built_on(self.architecture, tuple(builders), backend),
                              hint="the installed plugin differs from the one that described this network")
        kwargs: dict[str, Any] = {"role": self.role, "input_shape": tuple(self.input_shape),
                                  "output_shape": tuple(self.output_shape)}
        if record.conditional:
            kwargs["num_classes"] = self.num_classes
        return builders[backend](record.params.model_validate(self.params), **kwargs)

    def record_state(self, parameters: dict[str, Shape], buffers: dict[str, Shape], backend: str) -> None:
        """Record the built model's canonical names and shapes (the first build), or
        check that a rebuild (the EMA copy, a loaded checkpoint) has the recorded ones."""
        got = {"parameters": {k: tuple(v) for k, v in parameters.items()},
               "buffers": {k: tuple(v) for k, v in buffers.items()}}
        if not self.parameters and not self.buffers:
            self.parameters, self.buffers = got["parameters"], got["buffers"]
            return
        for what, want in (("parameters", self.parameter_shapes()), ("buffers", self.buffer_shapes())):
            if got[what] != want:
                diff = sorted(set(got[what]) ^ set(want)) or sorted(k for k in want if got[what][k] != want[k])
                raise CheckpointError(
                    f"the {backend} builder of architecture {self.architecture!r} made a {self.role} whose {what} "
                    f"differ from the recorded ones ({', '.join(diff[:3])})",
                    hint="the plugin changed since the checkpoint was written (install the version that wrote "
                         "it), or it names its weights differently on every build")


def is_native(spec) -> bool:
    """Whether ``spec`` is a :class:`NativeNet` (rather than a :class:`gankit.NetSpec`)."""
    return isinstance(spec, NativeNet)


def _net(value, handler):
    if isinstance(value, NativeNet):
        return value
    if isinstance(value, dict) and value.get("kind") == "native":
        return NativeNet.model_validate(value)
    return handler(value)


AnyNet = Annotated[SerializeAsAny[NetSpec], WrapValidator(_net)]
"""A pydantic field type holding a :class:`gankit.NetSpec` or a :class:`NativeNet`
(told apart by ``kind == "native"``), as a checkpoint manifest does."""


def bind(spec, registry, backend: str, where: str = "the checkpoint"):
    """Re-attach a :class:`NativeNet` read from a checkpoint to the installed plugin that
    builds it, refusing (with one :class:`CheckpointError` line) a backend that cannot
    build it or a plugin that is not installed. A :class:`gankit.NetSpec` passes through."""
    if not is_native(spec):
        return spec
    if backend not in spec.backends:
        raise CheckpointError(f"{where}: its {spec.role} is architecture {spec.architecture!r}, built natively "
                              f"for {' and '.join(spec.backends)} only; it cannot load on {backend}",
                              hint=f"load it with --backend {spec.backends[0]}")
    if not registry.has("architecture", spec.architecture):
        raise CheckpointError(f"{where}: its {spec.role} is the native architecture {spec.architecture!r}, "
                              "which no installed plugin provides",
                              hint="install the plugin that provides it (see `gankit plugins --kind architecture`)")
    return spec.attach(registry.get("architecture", spec.architecture).record)
