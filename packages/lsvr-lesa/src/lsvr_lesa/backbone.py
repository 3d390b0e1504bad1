"""LESA-ResNet-50 and LESA-WRN-50-2 backbones returning ``c2``..``c5`` (LESA spec §2, §3.6).

A ResNet-50 v1.5 trunk (torchvision ``Bottleneck`` blocks, stride on the 3x3) where, in the LESA stages,
``conv2`` + ``norm2`` of a block is replaced by a :class:`lsvr_lesa.block.LESA` (and ``bn2`` by identity, so
the block runs conv1 -> BN -> ReLU -> LESA -> ReLU -> conv3 -> BN -> + identity -> ReLU, spec §2), and the
other ``conv2`` of the DCN stages become 3x3 deformable convs. WRN-50-2 doubles the bottleneck width.

Beyond the reference (spec §7.1): any input size and aspect ratio. Each LESA block's relative-position
tables are sized for the largest padded input side (``max_input_size``) at the block's attention stride
and indexed by the actual feature-map height and width. Padded positions take part in the attention (the
reference has no padding: its inputs are fixed squares).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from lsvr_core.api import ConfigError, FrozenStagesMixin, Registry, ShapeSpec, batch_norm_layer
from lsvr_lesa.block import LESA, deformable_conv
from lsvr_lesa.config import LESAResNetBaseConfig

LEVELS = ("c2", "c3", "c4", "c5")
STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
DEPTH_50 = (3, 4, 6, 3)


class LESAResNet(FrozenStagesMixin):
    """``forward(images (B, 3, H, W) float32, normalised) -> {level: (B, C_l, ceil(H / s_l), ceil(W / s_l))}``.

    Args:
        cfg: a ``lesa_r50`` / ``lesa_wrn50`` config.
        wide: double the bottleneck width (WRN-50-2).
    Raises:
        ConfigError: LESA channels not divisible by 2 * heads.
    """

    def __init__(self, cfg: LESAResNetBaseConfig, wide: bool = False) -> None:
        super().__init__()
        self.out_levels = tuple(cfg.out_levels)
        self.frozen_stages = cfg.frozen_stages
        self.norm_eval = cfg.norm_eval
        norm_layer = batch_norm_layer(cfg.norm)
        width = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), norm_layer(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        padded_max = math.ceil(cfg.max_input_size / 32) * 32
        inplanes = width
        stages = []
        num_stages = max(LEVELS.index(lv) for lv in self.out_levels) + 1
        for s in range(num_stages):
            planes = width * 2**s
            stride = 1 if s == 0 else 2
            blocks = []
            for b in range(DEPTH_50[s]):
                block_stride = stride if b == 0 else 1
                downsample = None
                if b == 0 and (block_stride != 1 or inplanes != planes * 4):
                    downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, block_stride, bias=False),
                                               norm_layer(planes * 4))
                block = Bottleneck(inplanes, planes, block_stride, downsample, base_width=128 if wide else 64,
                                   norm_layer=norm_layer)
                _init_block(block, cfg.zero_init_residual)
                in_stride = STRIDES[LEVELS[s]] // block_stride  # stride of the block's input (and attention)
                self._replace_conv2(block, cfg, s, b, block_stride, math.ceil(padded_max / in_stride))
                blocks.append(block)
                inplanes = planes * 4
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self._channels = {lv: width * 4 * 2**i for i, lv in enumerate(LEVELS)}
        self._freeze()

    @staticmethod
    def _replace_conv2(block: Bottleneck, cfg: LESAResNetBaseConfig, stage: int, index: int, stride: int,
                       side: int) -> None:
        channels = block.conv2.in_channels
        use_dcn = cfg.dcn_stages[stage]
        if cfg.lesa_stages[stage] and not (index == 0 and cfg.first_conv_stages[stage]):
            if channels % (2 * cfg.heads):
                raise ConfigError(f"model.backbone: LESA in stage c{stage + 2} has {channels} channels, not "
                                  f"divisible by 2 * heads = {2 * cfg.heads}; change width or heads")
            block.conv2 = LESA(channels, (side, side), cfg.heads, stride, cfg.dcn if use_dcn else None,
                               cfg.with_cp, cfg.attention_backend)
            block.bn2 = nn.Identity()
        elif use_dcn:
            dcn = deformable_conv(cfg.dcn, channels, 1, stride)
            with torch.no_grad():
                dcn.weight.copy_(block.conv2.weight)
            block.conv2 = dcn

    def _frozen_modules(self) -> list[nn.Module]:
        return [] if self.frozen_stages < 0 else [self.stem, *self.stages[: self.frozen_stages]]

    # train(): frozen stages, and with ``norm_eval`` every BatchNorm (1-D and 2-D, LESA's included: spec §3.6),
    # stay in eval mode; affine parameters keep training (FrozenStagesMixin)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride (pixels) of each returned level."""
        return {lv: ShapeSpec(self._channels[lv], STRIDES[lv]) for lv in self.out_levels}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.stem(images)  # (B, width, H/4, W/4)
        out: dict[str, Tensor] = {}
        for level, stage in zip(LEVELS, self.stages, strict=True):
            x = stage(x)  # (B, C_l, ceil(H / s_l), ceil(W / s_l))
            if level in self.out_levels:
                out[level] = x
        return out


def _init_block(block: Bottleneck, zero_init_residual: bool) -> None:
    """torchvision's ResNet initialisation: kaiming-normal (fan_out) convs, BN weight 1 and bias 0; with
    ``zero_init_residual`` the last BN weight (``bn3``) is 0, so the block starts as its shortcut (the
    reference's mmdet ResNet default when trained without a checkpoint)."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual and block.bn3.weight is not None:
        with torch.no_grad():
            block.bn3.weight.zero_()


def build_lesa_r50(cfg: LESAResNetBaseConfig, *, registry: Registry | None = None) -> LESAResNet:
    """Factory of the ``lesa_r50`` backbone (LESA-ResNet-50)."""
    return LESAResNet(cfg, wide=False)


def build_lesa_wrn50(cfg: LESAResNetBaseConfig, *, registry: Registry | None = None) -> LESAResNet:
    """Factory of the ``lesa_wrn50`` backbone (LESA-WRN-50-2)."""
    return LESAResNet(cfg, wide=True)
