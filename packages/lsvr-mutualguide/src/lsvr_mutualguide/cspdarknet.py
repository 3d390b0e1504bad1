"""CSPDarknet (YOLOX's backbone) as MutualGuide v2 uses it (spec §7; ``HEAD:models/backbone/cspdarknet_backbone.py``).

Every conv is conv (no bias) -> BatchNorm (torch defaults) -> SiLU. Stem: Focus (the four pixel phases stacked
on the channels: top-left, bottom-left, top-right, bottom-right) then a 3x3 conv; ``dark2``..``dark5`` each
start with a stride-2 3x3 conv followed by a CSP layer (two 1x1 branches of half width, n bottlenecks
1x1 -> 3x3 with a residual add on one, concatenated, a 1x1); ``dark5`` puts an SPP block (max-pools 5, 9, 13)
before its CSP layer and uses no residual there. Widths 64 * w * (1, 2, 4, 8, 16), depths
n = max(round(3 d), 1) * (1, 3, 3, 1) for (d, w) = (0.33, 0.5), (0.67, 0.75), (1.0, 1.0): the ``0.5``,
``0.75`` and ``1.0`` variants. Outputs ``c4`` (dark4, stride 16) and ``c5`` (dark5, stride 32). Module names follow
YOLOX (``stem.conv.conv``, ``dark3.1.m.0.conv1``...), so its checkpoints' ``backbone.backbone.*`` entries load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from lsvr_core.api import ConfigError, Registry, ShapeSpec
from lsvr_mutualguide.config import CSPDarknetConfig

VARIANTS = {"0.5": (0.33, 0.5), "0.75": (0.67, 0.75), "1.0": (1.0, 1.0)}  # width name -> (depth, width) multipliers


class BaseConv(nn.Module):
    """Conv2d (no bias, padding (k - 1) // 2) -> BatchNorm2d -> SiLU. (B, in, H, W) -> (B, out, H / s, W / s)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Focus(nn.Module):
    """Space-to-depth (B, C, H, W) -> (B, 4C, H/2, W/2) in the order TL, BL, TR, BR, then a BaseConv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = BaseConv(4 * in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 BaseConvs at the same width, plus the input when ``shortcut``."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = BaseConv(channels, channels, 1)
        self.conv2 = BaseConv(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.shortcut else y


class CSPLayer(nn.Module):
    """CSP block (YOLOv5's C3): conv3(cat(m(conv1(x)), conv2(x))) with half-width branches."""

    def __init__(self, in_channels: int, out_channels: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1)
        self.conv2 = BaseConv(in_channels, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], 1))


class SPPBottleneck(nn.Module):
    """1x1 to half width, concat with stride-1 max-pools 5, 9, 13, then a 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes])
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], 1))


class CSPDarknet(nn.Module):
    """``forward(images (B, 3, H, W)) -> {"c4": (B, 512 w, H/16, W/16), "c5": (B, 1024 w, H/32, W/32)}``."""

    def __init__(self, depth: float, width: float) -> None:
        super().__init__()
        c = int(64 * width)
        n = max(round(3 * depth), 1)
        self.stem = Focus(3, c, 3)
        self.dark2 = nn.Sequential(BaseConv(c, 2 * c, 3, 2), CSPLayer(2 * c, 2 * c, n))
        self.dark3 = nn.Sequential(BaseConv(2 * c, 4 * c, 3, 2), CSPLayer(4 * c, 4 * c, 3 * n))
        self.dark4 = nn.Sequential(BaseConv(4 * c, 8 * c, 3, 2), CSPLayer(8 * c, 8 * c, 3 * n))
        self.dark5 = nn.Sequential(BaseConv(8 * c, 16 * c, 3, 2), SPPBottleneck(16 * c, 16 * c),
                                   CSPLayer(16 * c, 16 * c, n, shortcut=False))
        self._channels = (8 * c, 16 * c)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"c4": ShapeSpec(self._channels[0], 16), "c5": ShapeSpec(self._channels[1], 32)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c4 = self.dark4(self.dark3(self.dark2(self.stem(images))))
        return {"c4": c4, "c5": self.dark5(c4)}

    def freeze_stem(self) -> None:
        """Freeze the parameters of ``stem`` and ``dark2``, as the reference does after loading pretrained weights.
        Their BatchNorm statistics still update in training mode, as there (its ``eval()`` is undone by the
        training loop's ``model.train()``)."""
        for module in (self.stem, self.dark2):
            module.requires_grad_(False)


def build_cspdarknet(cfg: CSPDarknetConfig, *, registry: Registry | None = None) -> CSPDarknet:
    """Factory of the ``cspdarknet`` backbone.

    Raises:
        ConfigError: ``weights`` is not a file or does not match the variant (YOLOX checkpoints: the
            ``backbone.backbone.*`` entries of their ``model`` dict are loaded).
    """
    depth, width = VARIANTS[cfg.width]
    model = CSPDarknet(depth, width)
    if cfg.weights is not None:
        path = Path(cfg.weights)
        if not path.is_file():
            raise ConfigError(f"model.backbone.weights: {path} is not a file (a YOLOX checkpoint, e.g. yolox_s.pth)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        prefix = "backbone.backbone."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"model.backbone.weights: {path} does not match cspdarknet {cfg.width}: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}")
        if cfg.freeze_stem:
            model.freeze_stem()
    return model
