"""A fake backend built from :mod:`gankit.backend_contract` alone: numpy, MLPs only.

It implements the required primitives of :class:`~gankit.backend_contract.TrainerPrimitives`
on :class:`gankit.trainer.BaseTrainer` and nothing else: dense and activation layers with
hand-written backpropagation, the loss's gradient with respect to the logits by central
differences on the loss itself (numpy ops are forward only, so no penalties), plain
SGD and torch's Adam. It registers as ``numpy_fake`` through the same hook a third-party
distribution uses (``Registry.from_plugins([fake_backend])``).
"""

from __future__ import annotations

import numpy as np

import gankit
from gankit.errors import ConfigError
from gankit.ops import NumpyOps
from gankit.trainer import ROLES, BaseTrainer, DUpdate, optimizer_slots

NAME = "numpy_fake"
_ACT = {
    "relu": (lambda x, a: np.maximum(x, 0), lambda x, a: (x > 0).astype(x.dtype)),
    "leaky_relu": (lambda x, a: np.where(x >= 0, x, a * x), lambda x, a: np.where(x >= 0, 1.0, a).astype(x.dtype)),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: 1 - np.tanh(x) ** 2),
    "sigmoid": (lambda x, a: 1 / (1 + np.exp(-x)), lambda x, a: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    "identity": (lambda x, a: x, lambda x, a: np.ones_like(x)),
}
_STREAMS = {"noise": 0, "sample_noise": 1}


class NumpyTrainer(BaseTrainer):
    backend = NAME

    # -- set-up ---------------------------------------------------------------------------
    def init_device(self, device, threads):
        if device not in ("auto", "cpu"):
            raise ConfigError(f"the {NAME} backend runs on the cpu only, not {device!r}")
        return "cpu"

    def build(self):
        for spec in self.specs.values():
            kinds = {layer.kind for _, layer, _ in spec.walk()} - {"dense", "activation"}
            if kinds:
                raise ConfigError(f"the {NAME} backend builds dense and activation layers only, not {sorted(kinds)}")
        if self.regularizers:
            raise ConfigError(f"the {NAME} backend has no input gradients, so no regularizers")
        if self.world_size > 1 or self.setup.precision != "float32":
            raise ConfigError(f"the {NAME} backend trains in float32 in one process")
        for role in ROLES:
            if self.settings(role).name not in ("sgd", "adam"):
                raise ConfigError(f"the {NAME} backend has sgd and adam only")
        self.weights = {net: {} for net in self._nets()}
        self.slots = {role: {} for role in ROLES}
        self.steps = {role: 0 for role in ROLES}
        self.draws = dict.fromkeys(_STREAMS, 0)
        self.ops = NumpyOps(dtype="float64")

    def _rng(self, stream):
        self.draws[stream] += 1
        return np.random.default_rng([self.setup.seed, _STREAMS[stream], self.draws[stream]])

    def _latents(self, n, rng):
        if self.setup.latent_distribution == "uniform":
            return rng.uniform(-1, 1, (n, self.latent_dim)).astype(np.float32)
        return rng.standard_normal((n, self.latent_dim)).astype(np.float32)

    # -- nets -------------------------------------------------------------------------------
    def _run(self, net, x):
        """Output and the input of every layer (for backpropagation)."""
        w, inputs = self.weights[net], []
        for i, layer in enumerate(self._spec(net).layers):
            inputs.append(x)
            if layer.kind == "dense":
                x = x @ w[f"{i}.weight"] + (w[f"{i}.bias"] if layer.bias else 0)
            else:
                x = _ACT[layer.fn][0](x, layer.negative_slope)
        return x.astype(np.float32), inputs

    def _backprop(self, net, inputs, dy):
        """Gradients of the parameters and of the input, given d(out)."""
        w, grads = self.weights[net], {}
        for i in reversed(range(len(inputs))):
            layer, x = self._spec(net).layers[i], inputs[i]
            if layer.kind == "dense":
                grads[f"{i}.weight"] = x.T @ dy
                if layer.bias:
                    grads[f"{i}.bias"] = dy.sum(axis=0)
                dy = dy @ w[f"{i}.weight"].T
            else:
                dy = dy * _ACT[layer.fn][1](x, layer.negative_slope)
        return grads, dy

    def _loss_and_grad(self, fn, logits, wrt=0):
        """A loss of the logit batches and its gradient w.r.t. ``logits[wrt]``, by central
        differences in float64."""
        args = [np.asarray(a, np.float64) for a in logits]
        value = float(fn(*args))
        grad, h = np.zeros_like(args[wrt]), 1e-6
        for k in range(grad.size):
            up, down = [a.copy() for a in args], [a.copy() for a in args]
            up[wrt].flat[k] += h
            down[wrt].flat[k] -= h
            grad.flat[k] = (fn(*up) - fn(*down)) / (2 * h)
        return value, grad

    def _apply(self, role, grads, lr):
        s, p, slots = self.settings(role), self.weights[role], self.slots[role]
        self.steps[role] += 1
        t = self.steps[role]
        if s.clip_grad_norm:
            norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
            grads = {k: g * min(1.0, s.clip_grad_norm / (norm + 1e-6)) for k, g in grads.items()}
        f32 = np.float32  # slots are kept as they are saved, so a resumed run repeats exactly
        for name, g in grads.items():
            g = (g + s.weight_decay * p[name] if s.weight_decay else g).astype(f32)
            if s.name == "adam":
                m = slots[f"{name}.exp_avg"] = (s.betas[0] * slots.get(f"{name}.exp_avg", 0)
                                                + (1 - s.betas[0]) * g).astype(f32)
                v = slots[f"{name}.exp_avg_sq"] = (s.betas[1] * slots.get(f"{name}.exp_avg_sq", 0)
                                                   + (1 - s.betas[1]) * g * g).astype(f32)
                update = m / (1 - s.betas[0] ** t) / (np.sqrt(v / (1 - s.betas[1] ** t)) + s.eps)
            elif s.momentum:
                update = slots[f"{name}.momentum_buffer"] = (s.momentum * slots.get(f"{name}.momentum_buffer", 0)
                                                             + g).astype(f32)
            else:
                update = g
            p[name] = (p[name] - lr * update).astype(np.float32)

    # -- updates -------------------------------------------------------------------------
    def d_update(self, real, labels, hyper):
        fake, _ = self._run("generator", self._latents(len(real), self._rng("noise")))
        real_logits, real_in = self._run("discriminator", real)
        fake_logits, fake_in = self._run("discriminator", fake)
        pair = (real_logits[:, 0], fake_logits[:, 0])
        loss, d_real = self._loss_and_grad(lambda r, f: self.loss.discriminator(self.ops, r, f), pair, 0)
        _, d_fake = self._loss_and_grad(lambda r, f: self.loss.discriminator(self.ops, r, f), pair, 1)
        grads, _ = self._backprop("discriminator", real_in, d_real[:, None])
        more, _ = self._backprop("discriminator", fake_in, d_fake[:, None])
        self._apply("discriminator", {k: grads[k] + more[k] for k in grads}, hyper.lr["discriminator"])
        return DUpdate(loss, {}, float(pair[0].mean()), float(pair[1].mean()))

    def g_update(self, batch_size, real, labels, hyper):
        fake, g_in = self._run("generator", self._latents(batch_size, self._rng("noise")))
        fake_logits, d_in = self._run("discriminator", fake)
        real_logits = self._run("discriminator", real)[0][:, 0] if self.needs_real else None
        loss, d_fake = self._loss_and_grad(lambda f, *r: self.loss.generator(self.ops, f, *(r or (None,))),
                                           (fake_logits[:, 0], *(() if real_logits is None else (real_logits,))))
        _, d_sample = self._backprop("discriminator", d_in, d_fake[:, None])
        grads, _ = self._backprop("generator", g_in, d_sample)
        self._apply("generator", grads, hyper.lr["generator"])
        return loss

    def update_ema(self, decay):
        g, ema = self.weights["generator"], self.weights["generator_ema"]
        for k in g:
            ema[k] = g[k].copy() if decay == 0 else (ema[k] + (1 - decay) * (g[k] - ema[k])).astype(np.float32)

    # -- evaluation ---------------------------------------------------------------------
    def forward(self, net, x, labels):
        out = self._run(net, np.asarray(x, np.float32))[0]
        return out.reshape(len(out)) if net == "discriminator" else out

    def sample_latents(self, n, seed):
        return self._latents(n, self._rng("sample_noise") if seed is None else np.random.default_rng(seed))

    # -- state I/O ------------------------------------------------------------------------
    def export_weights(self, net):
        return {k: v.copy() for k, v in self.weights[net].items()}

    def import_weights(self, net, weights):
        self.weights[net] = {k: np.array(v, np.float32) for k, v in weights.items()}

    def export_optimizer(self, role):
        out = {"step": np.asarray(self.steps[role], np.int64)}
        for name, value in self.weights[role].items():
            for slot in optimizer_slots(self.settings(role)):
                out[f"{name}.{slot}"] = np.asarray(self.slots[role].get(f"{name}.{slot}", np.zeros_like(value)),
                                                   np.float32)
        return out

    def import_optimizer(self, role, state):
        self.steps[role] = int(state["step"])
        self.slots[role] = {k: np.array(v, np.float32) for k, v in state.items() if k != "step"}

    def export_rng(self):
        return {"draws": np.asarray([self.draws[s] for s in _STREAMS], np.int64)}

    def import_rng(self, state):
        draws = np.asarray(state["draws"])
        if draws.shape != (len(_STREAMS),):
            raise ValueError(f"'draws' has shape {draws.shape}")
        self.draws = dict(zip(_STREAMS, (int(d) for d in draws)))


class NumpyBackend:
    """The backend object (:class:`gankit.backend_contract.BackendSpec`): required members only."""

    name = NAME

    def version(self):
        return np.__version__

    def ops(self, dtype="float32", seed=0):
        return NumpyOps(seed=seed, dtype=dtype)

    def build_trainer(self, setup):
        return NumpyTrainer(setup)


@gankit.hookimpl
def gankit_register_backends():
    return [gankit.BackendRecord(name=NAME, factory=NumpyBackend, description="numpy MLPs (a test of the contract)")]
