"""RepVGG-A2 with train-time branches and deploy-time re-parameterisation (spec §2 "Backbones").

Written here rather than taken from timm because MutualGuide changes the architecture (stage0 at stride 1, so
stage3 is at stride 8 and stage4 at stride 16) and loads the official ``RepVGG-A2-train.pth``, whose key
names (``stage1.0.rbr_dense.conv.weight`` ...) this module keeps. Blocks [2, 4, 14, 1] for stages 1-4, widths
64/128/256/512 times [1.5, 1.5, 1.5, 2.75]; stage0 has min(64, 64 * 1.5) channels
(``V1:models/backbone/repvgg_backbone.py:89-137``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import ConfigError, Registry, ShapeSpec
from lsvr_mutualguide.config import RepVGGConfig

A2_BLOCKS = (2, 4, 14, 1)
A2_WIDTHS = (1.5, 1.5, 1.5, 2.75)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False))
    seq.add_module("bn", nn.BatchNorm2d(out_channels))
    return seq


def _fuse(kernel: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm into the preceding conv kernel: (kernel (O, I, k, k), bias (O,))."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepVGGBlock(nn.Module):
    """ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x) when shapes allow]) in training form, or
    ReLU(conv3x3'(x) + b) after :meth:`switch_to_deploy` (the same function in eval mode)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, deploy: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.nonlinearity = nn.ReLU(inplace=True)
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=True)
            return
        self.rbr_identity = nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        self.rbr_dense = conv_bn(in_channels, out_channels, 3, stride)
        self.rbr_1x1 = conv_bn(in_channels, out_channels, 1, stride)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "rbr_reparam"):
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The single 3x3 kernel (O, I, 3, 3) and bias (O,) equal to the three branches with BN statistics."""
        k3, b3 = _fuse(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        k1, b1 = _fuse(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel, bias = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.rbr_identity is not None:
            eye = torch.zeros_like(k3)
            eye[torch.arange(self.in_channels), torch.arange(self.in_channels), 1, 1] = 1.0
            ki, bi = _fuse(eye, self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    def switch_to_deploy(self) -> None:
        """Replace the branches by one fused 3x3 conv (uses the BN running statistics)."""
        if hasattr(self, "rbr_reparam"):
            return
        kernel, bias = self.equivalent_kernel_bias()
        self.rbr_reparam = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True)
        self.rbr_reparam.weight.data.copy_(kernel)
        self.rbr_reparam.bias.data.copy_(bias)
        for name in ("rbr_dense", "rbr_1x1", "rbr_identity"):
            delattr(self, name)


class RepVGGBackbone(nn.Module):
    """RepVGG trunk returning ``c3`` (stage3, stride 8) and ``c4`` (stage4, stride 16)."""

    def __init__(self, blocks: tuple[int, ...] = A2_BLOCKS, widths: tuple[float, ...] = A2_WIDTHS,
                 deploy: bool = False) -> None:
        super().__init__()
        in_planes = min(64, int(64 * widths[0]))
        self.stage0 = RepVGGBlock(3, in_planes, stride=1, deploy=deploy)  # stride 1: MutualGuide's change
        stages = []
        for planes, n in zip((64, 128, 256, 512), blocks, strict=True):
            planes = int(planes * widths[len(stages)])
            layers = []
            for i in range(n):
                layers.append(RepVGGBlock(in_planes, planes, stride=2 if i == 0 else 1, deploy=deploy))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self._channels = (int(256 * widths[2]), int(512 * widths[3]))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"c3": ShapeSpec(self._channels[0], 8), "c4": ShapeSpec(self._channels[1], 16)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c3 = self.stage3(self.stage2(self.stage1(self.stage0(images))))
        return {"c3": c3, "c4": self.stage4(c3)}

    def switch_to_deploy(self) -> RepVGGBackbone:
        """Fuse every block in place (call in eval mode, after training); returns self."""
        for module in self.modules():
            if isinstance(module, RepVGGBlock):
                module.switch_to_deploy()
        return self


def build_repvgg_a2(cfg: RepVGGConfig, *, registry: Registry | None = None) -> RepVGGBackbone:
    """Factory of the ``repvgg_a2`` backbone.

    Raises:
        ConfigError: ``weights`` is not a file, or does not match RepVGG-A2 (train-form keys expected; with
            ``deploy: true`` the weights are fused after loading).
    """
    model = RepVGGBackbone()
    if cfg.weights is not None:
        path = Path(cfg.weights)
        if not path.is_file():
            raise ConfigError(f"model.backbone.weights: {path} is not a file (the official RepVGG-A2-train.pth)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(("linear.", "gap."))}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"model.backbone.weights: {path} does not match RepVGG-A2: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    if cfg.deploy:
        model.eval().switch_to_deploy()
    return model
