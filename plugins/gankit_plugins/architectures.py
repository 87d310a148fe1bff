"""Built-in architectures, as neutral net specs.

* ``mlp``: a multilayer perceptron for low-dimensional data (the 2D toys) or flattened images.
* ``dcgan``: the deep convolutional GAN for 28×28 (the TensorFlow DCGAN tutorial, or with
  ``style = "paper"`` Radford et al.'s design sized for 28×28), 32×32 and 64×64 images
  (Radford et al. 2016, as in the PyTorch DCGAN example).
* ``cdcgan``: the class-conditional DCGAN: a class embedding (or one-hot code) joins the
  latent, and the discriminator ends in a projection head (Miyato & Koyama 2018).
* ``sngan_resnet``: the ResNet generator and spectrally normalised ResNet discriminator
  of SNGAN for 32×32 images (Miyato et al. 2018).

The generator maps a latent vector to a sample of the data's shape; the discriminator
maps a sample to one logit. Images are channel-first ``(C, H, W)``, any channel count.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, field_validator

import gankit
from gankit import (
    Activation,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalPool,
    LayerNorm,
    OneHot,
    Projection,
    Reshape,
    Residual,
    SpectralNorm,
    Upsample,
)


# -- mlp -------------------------------------------------------------------------
class MLPParams(gankit.StrictModel):
    """Parameters of the ``mlp`` architecture."""

    hidden: list[int] = Field(default_factory=lambda: [128, 128, 128], min_length=1)
    """Width of each hidden layer (each at least 1)."""
    activation: Literal["relu", "leaky_relu", "tanh"] = "relu"
    """Hidden-layer non-linearity."""
    negative_slope: float = Field(default=0.2, ge=0, lt=1)
    """Slope for x < 0 when activation is leaky_relu."""
    norm: Literal["none", "batch", "layer"] = "none"
    """Normalisation after each hidden dense layer."""
    output_activation: Literal["identity", "tanh", "sigmoid"] = "identity"
    """Non-linearity on the generator's output (the discriminator always outputs a raw logit)."""
    pack: int = Field(default=1, ge=1)
    """Discriminator only: PacGAN packing (Lin et al. 2018). The discriminator judges packs of
    this many samples, concatenated, and every real or generated batch is cut into packs (a
    batch size that is not a multiple is refused); a packed discriminator penalises a
    generator that lacks modes, since a pack of its samples is less varied than a real one.
    1: no packing."""

    @field_validator("hidden")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError(f"every hidden width must be at least 1, got {v}")
        return v


def build_mlp(params: MLPParams, *, role: str, input_shape, output_shape) -> gankit.NetSpec:
    """An MLP from ``input_shape`` to ``output_shape`` (flattening and reshaping as needed)."""
    if params.pack > 1 and role != "discriminator":
        raise ValueError(f"pack = {params.pack} applies to the discriminator (PacGAN); the {role} takes one latent at a time")
    layers: list = []
    if len(input_shape) > 1 and params.pack == 1:  # a pack arrives flat already
        layers.append(gankit.Flatten())
    for width in params.hidden:
        layers.append(gankit.Dense(units=width))
        if params.norm == "batch":
            layers.append(gankit.BatchNorm())
        elif params.norm == "layer":
            layers.append(gankit.LayerNorm())
        layers.append(gankit.Activation(fn=params.activation, negative_slope=params.negative_slope))
    layers.append(gankit.Dense(units=math.prod(output_shape)))
    if role == "generator" and params.output_activation != "identity":
        layers.append(gankit.Activation(fn=params.output_activation))
    if len(output_shape) > 1:
        layers.append(gankit.Reshape(shape=tuple(output_shape)))
    return gankit.NetSpec(name=f"mlp_{role}", input_shape=tuple(input_shape), layers=layers, pack=params.pack)


# -- shared checks -----------------------------------------------------------------
def _image_shape(arch: str, role: str, input_shape, output_shape, sizes: tuple[int, ...]) -> tuple[int, int]:
    """(channels, side) of the images an image architecture is asked to make or judge."""
    image = tuple(output_shape if role == "generator" else input_shape)
    other = tuple(input_shape if role == "generator" else output_shape)
    if len(image) != 3 or image[1] != image[2] or image[1] not in sizes:
        raise ValueError(f"{arch} is built for square images (C, H, W) of side {', '.join(map(str, sizes))}; "
                         f"the data has shape {image}")
    if role == "generator" and len(other) != 1:
        raise ValueError(f"the {arch} generator takes a flat latent vector, got input shape {other}")
    if role == "discriminator" and math.prod(other) != 1:
        raise ValueError(f"the {arch} discriminator outputs one logit, not shape {other}")
    return image[0], image[1]


# -- dcgan -------------------------------------------------------------------------
class DCGANParams(gankit.StrictModel):
    """Parameters of the ``dcgan`` architecture."""

    base_channels: int = Field(default=64, gt=0)
    """Width of the narrowest conv layer (the paper's ngf / ndf); the others are 2, 4 and 8 times it."""
    negative_slope: Optional[float] = Field(default=None, ge=0, lt=1)
    """LeakyReLU slope (default: 0.3 at 28×28, the tutorial's Keras default; 0.2 otherwise, the paper's)."""
    dropout: Optional[float] = Field(default=None, ge=0, lt=1)
    """Discriminator dropout after each conv block (default: 0.3 for the 28×28 tutorial style; none otherwise)."""
    style: Literal["tutorial", "paper"] = "tutorial"
    """At 28×28: ``tutorial`` is the TensorFlow DCGAN tutorial (dense 7×7 start, 5×5 kernels,
    leaky ReLU and batch norm in the generator, dropout and no batch norm in the
    discriminator); ``paper`` is Radford et al.'s design sized for 28×28 (7×7 transposed-conv
    start, 4×4 stride-2 kernels, ReLU generator, batch norm in both nets, no dropout), which
    learns digits several times faster. 32×32 and 64×64 are always ``paper``."""
    spectral_norm: bool = False
    """Discriminator only: spectral normalisation (Miyato et al. 2018) on every conv, dense
    and projection layer, and no batch norm (SN replaces it, as in SNGAN's DCGAN-style nets)."""
    norm: Literal["batch", "layer", "none"] = "batch"
    """Discriminator only, ``paper`` style (and 32×32, 64×64): the normalisation after each
    conv but the first. ``layer`` is layer norm over each sample's (C, H, W), what
    Gulrajani et al. (2017) put in a WGAN-GP critic, whose penalty is per sample and so
    must not be coupled across the batch by batch norm; ``none`` drops it. The tutorial
    style has no normalisation in its discriminator."""


def _spectrally_normalised(layers: list) -> list:
    """``layers`` with spectral norm on every weight layer and their batch norms dropped."""
    sn = SpectralNorm()
    return [layer.model_copy(update={"spectral_norm": sn}) if isinstance(layer, (Conv2d, Dense, Projection))
            else layer for layer in layers if not isinstance(layer, BatchNorm)]


def _dcgan_28_generator(p: DCGANParams, channels: int, slope: float) -> list:
    # The TensorFlow DCGAN tutorial: Keras batch norm defaults (momentum 0.99 in Keras'
    # convention, i.e. 0.01 here; eps 1e-3), no biases before batch norm. Its 'same'
    # padding for the stride-2 5×5 transposed convs is padding 2 + output_padding 1.
    c = p.base_channels
    bn = lambda: BatchNorm(momentum=0.01, eps=1e-3)  # noqa: E731
    act = lambda: Activation(fn="leaky_relu", negative_slope=slope)  # noqa: E731
    return [
        Dense(units=7 * 7 * 4 * c, bias=False), bn(), act(),
        Reshape(shape=(4 * c, 7, 7)),
        ConvTranspose2d(channels=2 * c, kernel_size=5, stride=1, padding=2, bias=False), bn(), act(),
        ConvTranspose2d(channels=c, kernel_size=5, stride=2, padding=2, output_padding=1, bias=False), bn(), act(),
        ConvTranspose2d(channels=channels, kernel_size=5, stride=2, padding=2, output_padding=1, bias=False),
        Activation(fn="tanh"),
    ]


def _dcgan_28_trunk(p: DCGANParams, slope: float, dropout: float) -> list:
    c = p.base_channels
    layers = []
    for width in (c, 2 * c):
        layers += [Conv2d(channels=width, kernel_size=5, stride=2, padding=2),
                   Activation(fn="leaky_relu", negative_slope=slope)]
        if dropout:
            layers.append(Dropout(rate=dropout))
    return layers + [Flatten()]


def _dcgan_28_paper_generator(p: DCGANParams, latent: int, channels: int) -> list:
    # Radford et al.'s recipe at 28 = 7 · 2 · 2: a 7×7 transposed conv from the 1×1 latent,
    # then two 4×4 stride-2 transposed convs (7 -> 14 -> 28); BN + ReLU between, tanh out.
    c = p.base_channels
    return [Reshape(shape=(latent, 1, 1)),
            ConvTranspose2d(channels=2 * c, kernel_size=7, stride=1, padding=0, bias=False),
            BatchNorm(), Activation(fn="relu"),
            ConvTranspose2d(channels=c, kernel_size=4, stride=2, padding=1, bias=False),
            BatchNorm(), Activation(fn="relu"),
            ConvTranspose2d(channels=channels, kernel_size=4, stride=2, padding=1, bias=False),
            Activation(fn="tanh")]


def _d_norm(p: DCGANParams) -> list:
    """The discriminator's normalisation layer after a conv (none for ``norm = "none"``)."""
    return {"batch": [BatchNorm()], "layer": [LayerNorm()], "none": []}[p.norm]


def _dcgan_28_paper_trunk(p: DCGANParams, slope: float, dropout: float) -> list:
    """28 -> 14 -> 7 with 4×4 stride-2 convs; batch norm on all but the first (the paper's rule)."""
    c = p.base_channels
    layers = [Conv2d(channels=c, kernel_size=4, stride=2, padding=1, bias=False),
              Activation(fn="leaky_relu", negative_slope=slope)]
    if dropout:
        layers.append(Dropout(rate=dropout))
    layers += [Conv2d(channels=2 * c, kernel_size=4, stride=2, padding=1, bias=p.norm != "batch"),
               *_d_norm(p), Activation(fn="leaky_relu", negative_slope=slope)]
    if dropout:
        layers.append(Dropout(rate=dropout))
    return layers


def _dcgan_generator(p: DCGANParams, latent: int, channels: int, side: int) -> list:
    # Radford et al. / the PyTorch DCGAN example: 1×1 -> 4×4 -> ... -> side, ReLU, tanh.
    stages = int(math.log2(side // 4))  # 32: 3 doublings, 64: 4
    width = p.base_channels * 2 ** (stages - 1)
    layers = [Reshape(shape=(latent, 1, 1)),
              ConvTranspose2d(channels=width, kernel_size=4, stride=1, padding=0, bias=False),
              BatchNorm(), Activation(fn="relu")]
    for _ in range(stages - 1):
        width //= 2
        layers += [ConvTranspose2d(channels=width, kernel_size=4, stride=2, padding=1, bias=False),
                   BatchNorm(), Activation(fn="relu")]
    return layers + [ConvTranspose2d(channels=channels, kernel_size=4, stride=2, padding=1, bias=False),
                     Activation(fn="tanh")]


def _dcgan_trunk(p: DCGANParams, side: int, slope: float, dropout: float) -> list:
    """The discriminator up to its (8c or 4c, 4, 4) features."""
    stages = int(math.log2(side // 4))
    layers = []
    width = p.base_channels
    for i in range(stages):
        layers.append(Conv2d(channels=width, kernel_size=4, stride=2, padding=1, bias=bool(i) and p.norm != "batch"))
        if i:
            layers += _d_norm(p)
        layers.append(Activation(fn="leaky_relu", negative_slope=slope))
        if dropout:
            layers.append(Dropout(rate=dropout))
        width *= 2
    return layers


def _dcgan(params: DCGANParams, role: str, input_shape, output_shape, *, conditional=None) -> gankit.NetSpec:
    """``conditional``: None, or (num_classes, conditioning, embedding_dim)."""
    arch = "cdcgan" if conditional else "dcgan"
    channels, side = _image_shape(arch, role, input_shape, output_shape, (28, 32, 64))
    if params.style == "tutorial" and side != 28 and "style" in params.model_fields_set:
        raise gankit.ConfigError(f"{arch} style 'tutorial' exists only for 28x28 images, not {side}x{side}",
                                 hint="drop style, or set style = \"paper\"")
    tutorial = side == 28 and params.style == "tutorial"
    if params.norm != "batch" and (role == "generator" or tutorial):
        where, hint = (("the generator", "set norm in [discriminator] params only") if role == "generator" else
                       ("the tutorial style's discriminator (it has none)",
                        "set style = \"paper\" in [discriminator] params, or drop norm"))
        raise gankit.ConfigError(f"{arch} norm sets the discriminator's normalisation; it does not apply to {where}",
                                 hint=hint)
    slope = params.negative_slope if params.negative_slope is not None else (0.3 if tutorial else 0.2)
    dropout = params.dropout if params.dropout is not None else (0.3 if tutorial else 0.0)
    if role == "generator":
        latent = input_shape[0]
        head = []
        if conditional:
            k, how, dim = conditional
            head = [Embedding(num_classes=k, features=dim)] if how == "embedding" else [OneHot(num_classes=k)]
            latent += dim if how == "embedding" else k
        if side == 28:
            body = _dcgan_28_generator(params, channels, slope) if tutorial else \
                _dcgan_28_paper_generator(params, latent, channels)
        else:
            body = _dcgan_generator(params, latent, channels, side)
        layers = head + body
    elif side == 28:
        if tutorial:
            layers = _dcgan_28_trunk(params, slope, dropout)
            layers.append(Projection(num_classes=conditional[0]) if conditional else Dense(units=1))
        else:
            layers = _dcgan_28_paper_trunk(params, slope, dropout)
            if conditional:
                layers += [Flatten(), Projection(num_classes=conditional[0])]
            else:
                layers += [Conv2d(channels=1, kernel_size=7, stride=1, padding=0, bias=False), Flatten()]
    else:
        layers = _dcgan_trunk(params, side, slope, dropout)
        if conditional:
            layers += [Flatten(), Projection(num_classes=conditional[0])]
        else:
            layers += [Conv2d(channels=1, kernel_size=4, stride=1, padding=0, bias=False), Flatten()]
    if params.spectral_norm:
        if role == "generator":
            raise gankit.ConfigError(f"{arch} spectral_norm applies to the discriminator, not the generator",
                                     hint="set spectral_norm = true in [discriminator] params only")
        layers = _spectrally_normalised(layers)
    style = "" if side != 28 or tutorial else "_paper"
    return gankit.NetSpec(name=f"{arch}{side}{style}{'_sn' if params.spectral_norm else ''}_{role}",
                          input_shape=tuple(input_shape), layers=layers)


def build_dcgan(params: DCGANParams, *, role: str, input_shape, output_shape) -> gankit.NetSpec:
    """DCGAN generator or discriminator for 28×28, 32×32 or 64×64 images."""
    return _dcgan(params, role, input_shape, output_shape)


class ConditionalDCGANParams(DCGANParams):
    """Parameters of the ``cdcgan`` architecture."""

    num_classes: int = Field(default=10, gt=1)
    """Number of classes when the data does not say (a labelled dataset's count wins)."""
    conditioning: Literal["embedding", "one_hot"] = "embedding"
    """How the generator reads the label: a learned embedding or a one-hot code, joined to the latent."""
    embedding_dim: int = Field(default=50, gt=0)
    """Width of the generator's class embedding."""


def build_cdcgan(params: ConditionalDCGANParams, *, role: str, input_shape, output_shape,
                 num_classes: int | None = None) -> gankit.NetSpec:
    """Class-conditional DCGAN: label joined to the latent; projection discriminator."""
    k = num_classes or params.num_classes
    if k < 2:
        raise ValueError(f"a class-conditional net needs at least 2 classes, the data's labels hold {k}")
    return _dcgan(params, role, input_shape, output_shape,
                  conditional=(k, params.conditioning, params.embedding_dim))


# -- sngan_resnet ------------------------------------------------------------------
class SNGANParams(gankit.StrictModel):
    """Parameters of the ``sngan_resnet`` architecture."""

    generator_channels: int = Field(default=256, gt=0)
    """Channels of the generator's residual blocks."""
    discriminator_channels: int = Field(default=128, gt=0)
    """Channels of the discriminator's residual blocks."""
    power_iterations: int = Field(default=1, ge=1)
    """Spectral-norm power iterations per training call."""


def _g_block(ch: int) -> Residual:
    # BN-ReLU-up-conv-BN-ReLU-conv, with an up-sampled 1×1 conv on the shortcut.
    return Residual(
        body=[BatchNorm(), Activation(fn="relu"), Upsample(scale_factor=2),
              Conv2d(channels=ch, kernel_size=3, padding=1), BatchNorm(), Activation(fn="relu"),
              Conv2d(channels=ch, kernel_size=3, padding=1)],
        shortcut=[Upsample(scale_factor=2), Conv2d(channels=ch, kernel_size=1)],
    )


def _d_block(ch: int, sn: SpectralNorm, *, first: bool = False, down: bool = True, learn_skip: bool = True) -> Residual:
    conv = lambda k: Conv2d(channels=ch, kernel_size=k, padding=k // 2, spectral_norm=sn)  # noqa: E731
    if first:  # the "optimized" first block: no activation before the first conv
        body = [conv(3), Activation(fn="relu"), conv(3), AvgPool2d(kernel_size=2)]
        return Residual(body=body, shortcut=[AvgPool2d(kernel_size=2), conv(1)])
    body = [Activation(fn="relu"), conv(3), Activation(fn="relu"), conv(3)]
    shortcut = [conv(1)] if learn_skip else []
    if down:
        body.append(AvgPool2d(kernel_size=2))
        shortcut.append(AvgPool2d(kernel_size=2))
    return Residual(body=body, shortcut=shortcut)


def build_sngan_resnet(params: SNGANParams, *, role: str, input_shape, output_shape) -> gankit.NetSpec:
    """SNGAN's ResNet generator (3 up-sampling blocks from 4×4) or discriminator (4
    blocks, spectral norm everywhere, ReLU and global sum pooling) for 32×32 images."""
    channels, side = _image_shape("sngan_resnet", role, input_shape, output_shape, (32,))
    if role == "generator":
        ch = params.generator_channels
        layers = [Dense(units=4 * 4 * ch), Reshape(shape=(ch, 4, 4)),
                  *(_g_block(ch) for _ in range(3)),
                  BatchNorm(), Activation(fn="relu"),
                  Conv2d(channels=channels, kernel_size=3, padding=1), Activation(fn="tanh")]
    else:
        ch = params.discriminator_channels
        sn = SpectralNorm(n_power_iterations=params.power_iterations)
        layers = [_d_block(ch, sn, first=True), _d_block(ch, sn),
                  _d_block(ch, sn, down=False, learn_skip=False), _d_block(ch, sn, down=False, learn_skip=False),
                  Activation(fn="relu"), GlobalPool(mode="sum"), Dense(units=1, spectral_norm=sn)]
    return gankit.NetSpec(name=f"sngan_resnet{side}_{role}", input_shape=tuple(input_shape), layers=layers)


@gankit.hookimpl
def gankit_register_architectures():
    return [
        gankit.ArchitectureRecord(
            name="mlp",
            params=MLPParams,
            factory=build_mlp,
            description="Multilayer perceptron (toy data, flattened images)",
            metadata={"paper": "Goodfellow et al. 2014, Generative Adversarial Nets"},
        ),
        gankit.ArchitectureRecord(
            name="dcgan",
            params=DCGANParams,
            factory=build_dcgan,
            description="Deep convolutional GAN for 28×28 (TensorFlow tutorial), 32×32 and 64×64 images",
            metadata={"paper": "Radford et al. 2016, Unsupervised Representation Learning with Deep "
                               "Convolutional Generative Adversarial Networks",
                      "conformance": {"data_shape": (1, 28, 28), "latent_dim": 16}},
        ),
        gankit.ArchitectureRecord(
            name="cdcgan",
            params=ConditionalDCGANParams,
            factory=build_cdcgan,
            conditional=True,
            description="Class-conditional DCGAN: label embedding at the generator's input, projection discriminator",
            metadata={"paper": "Mirza & Osindero 2014, Conditional GANs; Miyato & Koyama 2018, cGANs with "
                               "Projection Discriminator",
                      "conformance": {"data_shape": (1, 28, 28), "latent_dim": 16}},
        ),
        gankit.ArchitectureRecord(
            name="sngan_resnet",
            params=SNGANParams,
            factory=build_sngan_resnet,
            description="SNGAN ResNet generator and spectrally normalised ResNet discriminator, 32×32 images",
            metadata={"paper": "Miyato et al. 2018, Spectral Normalization for Generative Adversarial Networks",
                      "conformance": {"data_shape": (3, 32, 32), "latent_dim": 16}},
        ),
    ]
