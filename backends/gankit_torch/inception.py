"""InceptionV3 pool features for FID/KID/IS, in torch, from a user-supplied weights file.

The network is the "FID Inception" of the TensorFlow FID code (TTUR) as pytorch-fid ports
it: torchvision's InceptionV3 layout with its FID patches (average pools that exclude
padding; max pool in the last block), 1008 output classes. Parameter names follow that
state dict (``Mixed_5b.branch1x1.conv.weight``, ...), so its weights file loads as is:

    pt_inception-2015-12-05-6726825d.pth   (the pytorch-fid release; torch.load, weights only)

or the same tensors saved as ``.safetensors``. gankit downloads nothing: fetch the file
once (it is attached to the pytorch-fid releases on GitHub) and point
``evaluation.features.inception_v3.weights`` (or ``GANKIT_INCEPTION_WEIGHTS``) at it.

Inputs are gankit images ``(n, C, H, W)`` in [-1, 1]; grayscale is repeated to RGB and
every image is resized bilinearly to 299 x 299, as pytorch-fid does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit import DataError


class BasicConv2d(nn.Module):
    """Convolution (no bias), batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):
    # TensorFlow's average pool ignores the zero padding in its average.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin, pool: str):
        super().__init__()
        self.pool = pool  # "avg" in Mixed_7b, "max" in Mixed_7c (a quirk of the FID network)
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Pool features (2048) and logits (1008) of the FID Inception network."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(2048, 1008)

    def pool_features(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x):
        feats = self.pool_features(x)
        return feats, self.fc(feats)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or from a ``.pth``/``.pt`` loaded with
    ``weights_only=True`` (tensors only: no code runs)."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"InceptionV3 weights file {str(p)!r} does not exist",
                        hint="download pt_inception-2015-12-05-6726825d.pth from the pytorch-fid releases and set evaluation.features.inception_v3.weights")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file, or one that is not a state dict of tensors
        raise DataError(f"InceptionV3 weights file {str(p)!r} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict):
        raise DataError(f"InceptionV3 weights file {str(p)!r} does not hold a state dict")
    return state


def load_model(state: dict[str, torch.Tensor], device: str = "cpu") -> FIDInceptionV3:
    """The network with ``state`` loaded; one clear line on a missing or mis-shaped tensor."""
    model = FIDInceptionV3()
    skip = lambda k: k.endswith("num_batches_tracked") or k.startswith("AuxLogits.")  # noqa: E731 (unused here)
    own = {k: v for k, v in model.state_dict().items() if not skip(k)}
    state = {k: v for k, v in state.items() if not skip(k)}
    missing = sorted(set(own) - set(state))
    if missing:
        raise DataError(f"InceptionV3 weights: tensor {missing[0]!r} is missing ({len(missing)} missing in all)",
                        hint="use the FID Inception weights of pytorch-fid (pt_inception-2015-12-05)")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise DataError(f"InceptionV3 weights: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)",
                        hint="use the FID Inception weights of pytorch-fid (pt_inception-2015-12-05)")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise DataError(f"InceptionV3 weights: tensor {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model.eval().to(device)


class InceptionExtractor:
    """Batches of gankit images -> pool features / class probabilities (numpy)."""

    def __init__(self, model: FIDInceptionV3, size: int = 299, batch_size: int = 50, device: str = "cpu"):
        self.model, self.size, self.batch_size, self.device = model, size, batch_size, device

    def _prepare(self, x) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if t.shape[1] == 1:
            t = t.repeat(1, 3, 1, 1)
        if t.shape[1] != 3:
            raise DataError(f"InceptionV3 takes 1- or 3-channel images, got {t.shape[1]} channels")
        if tuple(t.shape[2:]) != (self.size, self.size):
            t = F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return t

    @torch.no_grad()
    def run(self, x):
        feats, logits = [], []
        for s in range(0, len(x), self.batch_size):
            f, lg = self.model(self._prepare(x[s : s + self.batch_size]))
            feats.append(f.cpu().double().numpy())
            logits.append(lg.cpu().double().numpy())
        import numpy as np

        return np.concatenate(feats), np.concatenate(logits)
