"""The whole backend contract of gankit, in one module.

A backend is a distribution that registers a :class:`gankit.BackendRecord` through the
``gankit`` entry-point group (see :func:`gankit.hookspecs.gankit_register_backends`). Its
factory returns a :class:`BackendSpec` object; its trainer subclasses
:class:`gankit.trainer.BaseTrainer`, which owns the neutral half of training (set-up
checks, state names and I/O by prefix, input and label checks, step results, learning
rate / penalty / EMA schedules), and implements the :class:`TrainerPrimitives` below —
nothing else. The reference implementations are ``gankit_jax`` (built from this module
alone), ``gankit_torch`` and ``gankit_tensorflow``; docs/backends.md walks through them.

Conventions shared by every primitive:

* Weights are dicts of numpy arrays by canonical name (:mod:`gankit.nets`: ``"0.weight"``,
  canonical layouts), without the ``generator.`` prefix: :class:`~gankit.trainer.BaseTrainer`
  adds and strips prefixes, and checks names and shapes against the specs before a
  primitive sees them.
* ``net`` is ``"generator"``, ``"discriminator"`` or ``"generator_ema"``; ``role`` is one of
  the first two.
* ``labels`` is ``None`` for an unconditional GAN, else checked int64 numpy class labels.
* Values a primitive reports (losses, mean logits) may stay on the device;
  :meth:`TrainerPrimitives.to_floats` fetches them, in one transfer where it can.
* Members marked *optional* (:func:`optional`) may be absent; gankit then says in one
  line that the backend lacks the feature (``gankit export``: "the jax backend has no
  ONNX exporter") or uses a neutral default (:meth:`TrainerPrimitives.fused_step`).

Like :mod:`gankit.hookspecs`, everything here is a declaration: empty bodies, typed, the
docstring is the contract. :func:`missing` lists what an implementation lacks.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gankit.ops import Ops
from gankit.protocol import ProcessGroup, TrainSetup


def optional(fn):
    """Mark a member of the contract as optional."""
    fn.__gankit_optional__ = True
    return fn


def is_optional(cls: type, name: str) -> bool:
    return bool(getattr(getattr(cls, name), "__gankit_optional__", False))


#: The modules of a backend package (``gankit_<name>/``), mirrored file for file by every
#: backend, with the public names each must define where the contract fixes them. A public
#: function two backends share in one of these modules has the same parameters in both
#: (``tests/backends/test_backend_modules.py``). ``nn`` is net-first: ``build_net(spec)``
#: returns a net carrying ``net.spec``; ``check_weights(net, weights, prefix="")``,
#: ``load_weights(net, weights, prefix="")`` (returns the net holding the weights) and
#: ``export_weights(net)`` take it first. ``distributed.init(mode, device)`` returns a
#: :class:`gankit.protocol.ProcessGroup`.
MODULES: dict[str, tuple[str, ...]] = {
    "plugin": ("gankit_register_backends",),
    "backend": (),           # the BackendSpec class
    "device": ("resolve_device", "device_name", "set_threads"),
    "ops": (),               # the Ops subclass
    "nn": ("build_net", "check_weights", "load_weights", "export_weights", "SUPPORTED_LAYERS"),
    "optim": ("build_optimizer",),
    "step": (),              # the BaseTrainer subclass
    "distributed": ("init", "launcher_world_size"),
    "export": ("generator_module",),
}


# -- the backend object (what the plugin's factory returns) ------------------------------------
class BackendSpec:
    """The object a backend plugin's factory returns (:class:`gankit.Backend`)."""

    #: The backend's registered name (``"torch"``, ``"jax"``, ...).
    name: str

    def version(self) -> str:
        """The framework's version string (reports, checkpoint manifests)."""

    def ops(self, dtype: str = "float32", seed: int = 0) -> Ops:
        """An :class:`gankit.Ops` of the framework for standalone evaluation (the
        conformance suite, tests): every method of :class:`gankit.Ops`, ``dtype`` the
        default dtype of the arrays it makes, random draws seeded with ``seed``."""

    def build_trainer(self, setup: TrainSetup) -> Any:
        """A trainer for ``setup``: an instance of a :class:`gankit.trainer.BaseTrainer`
        subclass (which implements :class:`gankit.Trainer`). Refuse what the backend
        cannot do (a precision, a device, native nets of another framework) with a
        :class:`gankit.ConfigError` of one line."""

    @optional
    def distributed(self, mode: str = "auto", device: str = "auto") -> ProcessGroup:
        """Join the launcher's process group for ``training.distributed = mode`` and
        report this process's place in it. Optional: without it gankit trains in one
        process and refuses ``mirrored``; a backend that has it but trains in one
        process only refuses multi-process launches in one line."""

    @optional
    def export_onnx(self, trainer: Any, path: Any, opset: int = 17) -> list[str]:
        """Write the trainer's sampling generator (EMA when kept, eval mode) as ONNX to
        ``path``: input ``z`` (batch, latent_dim) float32 (plus ``labels`` (batch,) int64
        when class-conditional), output ``samples``; returns the input names. Optional:
        without it ``gankit export`` names the backend and the backends that export."""

    @optional
    def generator_module(self, trainer: Any) -> Any:
        """The trainer's sampling generator as the framework's own object, for use
        outside gankit: a ``torch.nn.Module``, a ``tf.Module`` callable like a Keras
        layer, a jax function with its params. Optional: :func:`gankit.export.generator`
        names the backend when it is absent."""


# -- the trainer's primitives (what a BaseTrainer subclass implements) -------------------------
class TrainerPrimitives:
    """What a :class:`gankit.trainer.BaseTrainer` subclass implements; the base class
    calls these and nothing else of the framework. Set-up first, then the updates,
    evaluation, and state I/O."""

    # set-up ----------------------------------------------------------------------------------
    def init_device(self, device: str, threads: int | None) -> str:
        """Apply ``threads`` (the framework's CPU threads, process-wide; ``None`` keeps its
        default; warn in one line when the framework no longer allows it) and resolve the
        config device (``auto``, ``cpu``, ``cuda[:N]``, ``gpu[:N]``, ``mps``; an unavailable
        one falls back to the cpu with one RuntimeWarning, an unknown one is a
        ConfigError). Returns the neutral name: ``"cpu"``, ``"cuda:N"`` or ``"mps"``.
        Called first, before :meth:`build`."""

    def build(self) -> None:
        """Build both nets from ``self.specs`` (and the EMA generator when
        ``self.has_ema``), the optimizers from ``self.settings(role)``, the random
        streams from ``self.setup.seed``, and compile what the framework compiles. The
        weights come next, through :meth:`import_weights`. Refuse ``world_size > 1``
        unless the backend trains data-parallel."""

    # updates -----------------------------------------------------------------------------
    def d_update(self, real: Any, labels: Any, hyper: Any) -> Any:
        """One discriminator update on the real batch ``real`` (float32 numpy, checked):
        fakes from fresh training latents (the real batch's labels), both batches'
        logits in training mode, ``loss.discriminator`` plus each penalty times
        ``hyper.penalty[name]``, one optimizer step at ``hyper.lr["discriminator"]``
        with ``clip_grad_norm``. Returns a :class:`gankit.trainer.DUpdate` (the loss
        without penalties, each weighted penalty, the mean real and fake logits)."""

    def g_update(self, batch_size: int, real: Any, labels: Any, hyper: Any) -> Any:
        """One generator update on ``batch_size`` fresh latents at
        ``hyper.lr["generator"]``; ``real`` (for losses whose generator side reads the
        real logits, else possibly None) must not train the discriminator. Returns the
        generator loss (a device scalar)."""

    def update_ema(self, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * generator`` for parameters (exactly a copy
        at ``decay == 0``), buffers copied. Called after each step's generator update
        when ``self.has_ema``."""

    @optional
    def fused_step(self, batches: Any, labels: Any, hyper: Any) -> Sequence[float]:
        """The whole step at once: ``n_critic`` :meth:`d_update` (one per leading slice of
        ``batches``), one :meth:`g_update` on the last batch, :meth:`update_ema`; returns
        ``[d_loss, g_loss, real_logit, fake_logit, *penalties]`` as floats. Optional: the
        base class composes the three primitives; a backend that compiles the whole step
        (one traced function, one host transfer) overrides it and must consume random
        numbers as the composed primitives do."""

    @optional
    def to_floats(self, values: Sequence[Any]) -> list[float]:
        """Device scalars as Python floats. Optional: the default converts one by one."""

    @optional
    def on_step_count(self, value: int) -> None:
        """``step_count`` was set (resuming); update a step index kept on the device."""

    @optional
    def sync_buffers(self) -> None:
        """Make the replicas' buffers (batch-norm statistics, spectral-norm vectors) agree,
        once per step after the generator update and before :meth:`update_ema` (called by
        the default :meth:`fused_step`). Optional: a backend training in one process, or
        whose data-parallel machinery syncs them itself, needs nothing here."""

    # evaluation --------------------------------------------------------------------------
    def forward(self, net: str, x: Any, labels: Any) -> np.ndarray:
        """``net`` in eval mode on ``x`` (latents for a generator, samples for the
        discriminator; numpy or the backend's arrays), float32 numpy: samples of shape
        ``(n, *sample_shape)``, or logits of shape ``(n,)``. Changes no state."""

    def sample_latents(self, n: int, seed: int | None) -> Any:
        """``n`` latents from ``setup.latent_distribution`` (normal, or uniform on [-1, 1)):
        from a stream apart from the training noise when ``seed`` is None (sampling never
        changes the course of training), else from a generator seeded with ``seed``."""

    # state I/O ---------------------------------------------------------------------------
    def export_weights(self, net: str) -> dict[str, np.ndarray]:
        """Parameters and buffers of ``net`` by canonical name, canonical layout, float32
        numpy copies (never views of live weights)."""

    def import_weights(self, net: str, weights: Mapping[str, np.ndarray]) -> None:
        """Copy canonical ``weights`` (names and shapes already checked) into ``net``."""

    def export_optimizer(self, role: str) -> dict[str, np.ndarray]:
        """The optimizer of ``role``: ``step`` (int64 0-d) and each slot as
        ``<canonical param name>.<slot>`` with torch's slot names
        (:func:`gankit.trainer.optimizer_slots`) in the parameter's canonical layout;
        zeros for slots not created yet."""

    def import_optimizer(self, role: str, state: Mapping[str, np.ndarray]) -> None:
        """Load what :meth:`export_optimizer` (of any backend) wrote; already checked."""

    def export_rng(self) -> dict[str, np.ndarray]:
        """Every random stream's state (training noise, penalties' draws, sampling, and
        anything else a resumed run must repeat) as numpy arrays. Backend specific."""

    def import_rng(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`export_rng` returned; raise KeyError / ValueError on a
        state it cannot take (the base turns it into one CheckpointError line)."""

    @optional
    def native_weights(self, spec: Any, seed: int) -> dict[str, np.ndarray]:
        """Build a plugin's native model (:class:`gankit.NativeNet`) on this framework
        with its own initialisation drawn from ``seed`` and return its weights by their
        names (see :func:`gankit.trainer.with_native_weights`, which
        :class:`~gankit.trainer.BaseTrainer` calls with it before :meth:`init_device`
        for the native nets the setup has no weights for). Optional: a backend without
        it builds specs only and refuses native nets in one line."""


def members(cls: type) -> dict[str, bool]:
    """The contract's members of ``cls`` (:class:`BackendSpec` or
    :class:`TrainerPrimitives`): name -> whether optional."""
    names = [n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))]
    if cls is BackendSpec:
        names = ["name", *names]
    return {n: n != "name" and is_optional(cls, n) for n in names}


def missing(obj: Any, contract: type) -> list[str]:
    """The required members of ``contract`` that ``obj`` (a backend object or a trainer
    class) lacks. For :class:`TrainerPrimitives` a primitive counts only where ``obj``
    overrides the declaration."""
    out = []
    cls = obj if isinstance(obj, type) else type(obj)
    for name, is_opt in members(contract).items():
        if is_opt:
            continue
        if contract is TrainerPrimitives:
            impl = getattr(cls, name, None)
            declared = getattr(TrainerPrimitives, name)
            if impl is None or impl is declared or getattr(impl, "__gankit_declared__", False):
                out.append(name)
        elif not hasattr(obj, name):
            out.append(name)
    return out
