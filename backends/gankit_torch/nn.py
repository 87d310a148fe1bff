"""Build a :class:`gankit.NetSpec` as a ``torch.nn.Module``; canonical weights in and out.

The module is a :class:`Net` (an ``nn.Sequential``) whose child ``i`` is layer ``i`` of
the spec, so torch's own names (``"0.weight"``, ``"2.running_var"``,
``"3.body.1.weight_u"``) are the canonical names. Torch's layouts are the canonical
ones (NCHW images, conv ``(out, in, kh, kw)``, transposed conv ``(in, out, kh, kw)``)
except one: a canonical dense weight is (in, out), ``nn.Linear`` stores (out, in), so
dense weights are transposed on the way in and out.

Call a net as ``net(x)`` or, when it is class-conditional, ``net(x, labels)``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit import NetSpec
from gankit.trainer import check_weights as _check_canonical, weight_shapes

from gankit_torch.layout import transposed_names


class _SharedSpec:
    """A spec that ``copy.deepcopy`` shares instead of copying (a spec is immutable, and a
    native one may hold its plugin's builder, which cannot be copied)."""

    __slots__ = ("spec",)

    def __init__(self, spec):
        self.spec = spec

    def __deepcopy__(self, memo):
        return self


class SpecNet:
    """A module that carries the spec it was built from, as ``net.spec`` (what
    :func:`check_weights`, :func:`load_weights` and :func:`export_weights` read); copies of
    the module share it."""

    @property
    def spec(self):
        return self._shared_spec.spec

    @spec.setter
    def spec(self, spec) -> None:
        self._shared_spec = _SharedSpec(spec)


class Net(SpecNet, nn.Sequential):
    """A spec's layers in order; children that read class labels get them."""

    def forward(self, x, labels=None):
        for module in self:
            x = module(x, labels) if getattr(module, "takes_labels", False) else module(x)
        return x


class Reshape(nn.Module):
    """Reshape each sample, keeping the batch axis."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


# -- spectral normalisation --------------------------------------------------------
def _spectral_normalize(module: nn.Module, weight: torch.Tensor, name: str, rows_first) -> torch.Tensor:
    """``weight / sigma`` with gankit's power iteration (see :class:`gankit.nets.SpectralNorm`).

    ``rows_first(weight)`` is the weight as a matrix with one row per output; ``u`` is
    the buffer ``<name>_u``, updated in training mode only.
    """
    sn = module.sn
    u_buf = getattr(module, f"{name}_u")
    mat = rows_first(weight)
    with torch.no_grad():
        u = u_buf.clone()
        w = mat.detach()
        if module.training:
            for _ in range(sn.n_power_iterations):
                v = F.normalize(w.t() @ u, dim=0, eps=sn.eps)
                u = F.normalize(w @ v, dim=0, eps=sn.eps)
            u_buf.copy_(u)
        else:
            v = F.normalize(w.t() @ u, dim=0, eps=sn.eps)
    sigma = torch.dot(u, mat @ v)
    return weight / sigma


def _dense_rows(w):  # canonical dense (in, out) is torch's (out, in): rows already
    return w


def _conv_rows(w):
    return w.reshape(w.shape[0], -1)


def _conv_t_rows(w):
    return w.transpose(0, 1).reshape(w.shape[1], -1)


class _SN:
    def _init_sn(self, sn, rows: int, name: str = "weight"):
        self.sn = sn
        if sn is not None:
            self.register_buffer(f"{name}_u", torch.zeros(rows))

    def _weight(self, rows_first, name: str = "weight"):
        w = getattr(self, name)
        return w if self.sn is None else _spectral_normalize(self, w, name, rows_first)


class Linear(nn.Linear, _SN):
    def __init__(self, n_in, layer):
        super().__init__(n_in, layer.units, bias=layer.bias)
        self._init_sn(layer.spectral_norm, layer.units)

    def forward(self, x):
        return F.linear(x, self._weight(_dense_rows), self.bias)


class Conv2d(nn.Conv2d, _SN):
    def __init__(self, c_in, layer):
        super().__init__(c_in, layer.channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias)
        self._init_sn(layer.spectral_norm, layer.channels)

    def forward(self, x):
        return self._conv_forward(x, self._weight(_conv_rows), self.bias)


class ConvTranspose2d(nn.ConvTranspose2d, _SN):
    def __init__(self, c_in, layer):
        super().__init__(c_in, layer.channels, layer.kernel_size, layer.stride, layer.padding,
                         output_padding=layer.output_padding, bias=layer.bias)
        self._init_sn(layer.spectral_norm, layer.channels)

    def forward(self, x):
        return F.conv_transpose2d(x, self._weight(_conv_t_rows), self.bias, self.stride, self.padding,
                                  self.output_padding)


def _join(x, extra, combine):
    """Combine per-sample class features (batch, F) with x (batch, C) or (batch, C, H, W)."""
    if x.ndim == 4:
        extra = extra[:, :, None, None]
        if combine == "concat":
            extra = extra.expand(-1, -1, x.shape[2], x.shape[3])
    if combine == "concat":
        return torch.cat([x, extra.to(x.dtype)], dim=1)
    return x * extra


class Embedding(nn.Module, _SN):
    takes_labels = True

    def __init__(self, layer):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(layer.num_classes, layer.features))
        self.combine = layer.combine
        self._init_sn(layer.spectral_norm, layer.num_classes)

    def forward(self, x, labels):
        return _join(x, F.embedding(labels, self._weight(_conv_rows)), self.combine)


class OneHot(nn.Module):
    takes_labels = True

    def __init__(self, layer):
        super().__init__()
        self.num_classes = layer.num_classes

    def forward(self, x, labels):
        return _join(x, F.one_hot(labels, self.num_classes).to(x.dtype), "concat")


class Projection(nn.Module, _SN):
    """``h @ weight + bias + sum(embedding[labels] * h)``, weight stored (in, 1)."""

    takes_labels = True

    def __init__(self, n_in, layer):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, 1))
        self.bias = nn.Parameter(torch.zeros(1)) if layer.bias else None
        self.embedding = nn.Parameter(torch.zeros(layer.num_classes, n_in))
        self._init_sn(layer.spectral_norm, 1)
        self._init_sn(layer.spectral_norm, layer.num_classes, "embedding")

    def forward(self, h, labels):
        out = h @ self._weight(lambda w: w.t())
        if self.bias is not None:
            out = out + self.bias
        e = F.embedding(labels, self._weight(_conv_rows, "embedding"))
        return out + (e * h).sum(dim=1, keepdim=True)


class GlobalPool(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return x.sum(dim=(2, 3)) if self.mode == "sum" else x.mean(dim=(2, 3))


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; an empty shortcut is the identity."""

    def __init__(self, body: Net, shortcut: Net):
        super().__init__()
        self.body, self.shortcut = body, shortcut
        self.takes_labels = any(getattr(m, "takes_labels", False) for m in (*body, *shortcut))

    def forward(self, x, labels=None):
        return self.body(x, labels) + self.shortcut(x, labels)


_ACTIVATIONS = {
    "relu": lambda layer: nn.ReLU(),
    "leaky_relu": lambda layer: nn.LeakyReLU(layer.negative_slope),
    "tanh": lambda layer: nn.Tanh(),
    "sigmoid": lambda layer: nn.Sigmoid(),
    "identity": lambda layer: nn.Identity(),
}


#: The layer kinds this backend builds (each by a branch of :func:`_build_layer`).
SUPPORTED_LAYERS = (
    "dense", "conv2d", "conv_transpose2d", "upsample", "avg_pool2d", "global_pool", "activation", "dropout",
    "batch_norm", "layer_norm", "reshape", "flatten", "embedding", "one_hot", "projection", "residual",
)


def _build_layer(layer, input_shape) -> nn.Module:
    kind = layer.kind
    if kind == "dense":
        return Linear(input_shape[0], layer)
    if kind == "conv2d":
        return Conv2d(input_shape[0], layer)
    if kind == "conv_transpose2d":
        return ConvTranspose2d(input_shape[0], layer)
    if kind == "upsample":
        return nn.Upsample(scale_factor=layer.scale_factor, mode="nearest")
    if kind == "avg_pool2d":
        return nn.AvgPool2d(layer.kernel_size, layer.stride or layer.kernel_size)
    if kind == "global_pool":
        return GlobalPool(layer.mode)
    if kind == "activation":
        return _ACTIVATIONS[layer.fn](layer)
    if kind == "dropout":
        return nn.Dropout(layer.rate)
    if kind == "batch_norm":
        # torch semantics are the canonical ones: normalise with the biased batch
        # variance; running = (1 - momentum) * running + momentum * batch, with the
        # unbiased batch variance; eval mode uses the running statistics.
        norm = nn.BatchNorm1d if len(input_shape) == 1 else nn.BatchNorm2d
        return norm(input_shape[0], eps=layer.eps, momentum=layer.momentum)
    if kind == "layer_norm":
        return nn.LayerNorm(tuple(input_shape), eps=layer.eps)
    if kind == "reshape":
        return Reshape(layer.shape)
    if kind == "flatten":
        return nn.Flatten(start_dim=1)
    if kind == "embedding":
        return Embedding(layer)
    if kind == "one_hot":
        return OneHot(layer)
    if kind == "projection":
        return Projection(input_shape[0], layer)
    if kind == "residual":
        branches = {name: [] for name in ("body", "shortcut")}
        for prefix, sub, shape in layer.sublayers(input_shape):
            branches[prefix.split(".")[0]].append(_build_layer(sub, shape))
        return Residual(Net(*branches["body"]), Net(*branches["shortcut"]))
    raise NotImplementedError(f"the torch backend cannot build layer kind {kind!r} yet")


def build_net(spec: NetSpec) -> Net:
    """The spec as a :class:`Net` (float32, on cpu; load canonical weights next). A
    :class:`gankit.NativeNet` is the plugin's own module (:mod:`gankit_torch.native`)."""
    if getattr(spec, "kind", None) == "native":
        from gankit_torch.native import build_native

        return build_native(spec)
    unknown = sorted({layer.kind for _, layer, _ in spec.walk()} - set(SUPPORTED_LAYERS))
    if unknown:
        raise NotImplementedError(f"the torch backend cannot build layer kind(s) {unknown} of net {spec.name!r}; "
                                  f"supported: {', '.join(SUPPORTED_LAYERS)}")
    shapes = spec.shapes()
    net = Net(*(_build_layer(layer, shapes[i]) for i, layer in enumerate(spec.layers)))
    net.spec = spec
    return net


def export_weights(net: nn.Module) -> dict[str, np.ndarray]:
    """The parameters and buffers of ``net`` (a net from :func:`build_net`, or a native
    module, that carries its ``spec``) in the canonical layout (float32 copies)."""
    spec, state = net.spec, net.state_dict()
    flip = transposed_names(spec)
    out = {}
    for name in weight_shapes(spec):
        t = state[name].detach()
        if name in flip:
            t = t.t()
        out[name] = t.to("cpu", torch.float32).numpy().copy()  # copy: never alias live weights
    return out


def check_weights(net: nn.Module, weights: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Raise :class:`gankit.CheckpointError` unless ``weights`` has exactly the names and
    shapes of ``net``'s spec (:func:`gankit.trainer.check_weights`); ``prefix`` (e.g.
    ``"generator."``) labels messages."""
    _check_canonical(net.spec, weights, prefix)


@torch.no_grad()
def load_weights(net: nn.Module, weights: Mapping[str, np.ndarray], prefix: str = "") -> nn.Module:
    """Copy canonical ``weights`` into ``net`` in place (checked first; nothing is changed
    if they do not match); returns ``net``."""
    check_weights(net, weights, prefix)
    spec, state = net.spec, net.state_dict()  # tensors share storage with the module's
    flip = transposed_names(spec)
    for name in weight_shapes(spec):
        target = state[name]
        value = torch.as_tensor(np.asarray(weights[name]), dtype=target.dtype)
        if name in flip:
            value = value.t()
        target.copy_(value.to(target.device))
    return net
