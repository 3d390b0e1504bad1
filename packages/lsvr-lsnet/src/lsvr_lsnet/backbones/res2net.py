"""Res2Net v1d backbone (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2019), laid out
as mmdetection's ``Res2Net`` so its ImageNet checkpoints load by name; optional DCNv2 in the split 3x3 convs.

The LSNet R2-101 rows use Res2Net-101 v1d 26w x 4s with DCNv2 in C3-C5, frozen stem + stage 1 and BatchNorm in
eval mode (LSNet spec §2.1). Key names: ``stem.{0,1,3,4,6,7}``, ``layer{1..4}.{i}.{conv1,bn1,convs.j,bns.j,conv3,
bn3,downsample.{1,2}}`` (``downsample.0`` is the average pool); a DCN split conv adds ``convs.j.conv_offset``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.api import ConfigError, FrozenStagesMixin, ShapeSpec, batch_norm_layer
from lsvr_lsnet.config import Res2NetConfig
from lsvr_ops_triton import ModulatedDeformConv2d

LEVELS = ("c2", "c3", "c4", "c5")
STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
EXPANSION = 4


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: 1x1 conv to ``scales`` splits of ``width`` channels; split 0 -> conv, split i ->
    conv(split i + previous output) (``normal`` blocks) or conv(split i) (the first, ``stage`` block of a stage);
    the last split is passed through (average-pooled 3x3/stride in a strided ``stage`` block); concat -> 1x1 conv
    -> + shortcut -> ReLU. The stride sits on the split 3x3 convs (pytorch style).

    Shapes: (N, inplanes, H, W) -> (N, planes * 4, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, stage_block: bool,
                 scales: int, base_width: int, norm: Any, dcn: bool) -> None:
        super().__init__()
        width = math.floor(planes * base_width / 64)
        self.width, self.scales, self.stride, self.stage_block = width, scales, stride, stage_block
        self.conv1 = nn.Conv2d(inplanes, width * scales, 1, bias=False)
        self.bn1 = norm(width * scales)
        conv = ModulatedDeformConv2d if dcn else nn.Conv2d
        self.convs = nn.ModuleList([conv(width, width, 3, stride=stride, padding=1, bias=False)
                                    for _ in range(scales - 1)])
        self.bns = nn.ModuleList([norm(width) for _ in range(scales - 1)])
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if stage_block and stride > 1 else None
        self.conv3 = nn.Conv2d(width * scales, planes * EXPANSION, 1, bias=False)
        self.bn3 = norm(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, dim=1)
        outs, sp = [], splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        last = splits[-1]
        outs.append(self.pool(last) if self.pool is not None else last)
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _layer(inplanes: int, planes: int, blocks: int, stride: int, cfg: Res2NetConfig, norm: Any,
           dcn: bool) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * EXPANSION:
        pool: nn.Module = (nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if cfg.avg_down
                           else nn.Identity())
        conv = nn.Conv2d(inplanes, planes * EXPANSION, 1, stride=1 if cfg.avg_down else stride, bias=False)
        downsample = nn.Sequential(pool, conv, norm(planes * EXPANSION))
    layers = [Bottle2neck(inplanes, planes, stride, downsample, True, cfg.scales, cfg.base_width, norm, dcn)]
    layers += [Bottle2neck(planes * EXPANSION, planes, 1, None, False, cfg.scales, cfg.base_width, norm, dcn)
               for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _stem(deep: bool, norm: Any) -> nn.Sequential:
    if not deep:
        return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), norm(64), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), norm(32), nn.ReLU(inplace=True),
                         nn.Conv2d(32, 32, 3, 1, 1, bias=False), norm(32), nn.ReLU(inplace=True),
                         nn.Conv2d(32, 64, 3, 1, 1, bias=False), norm(64), nn.ReLU(inplace=True))


class Res2Net(FrozenStagesMixin):
    """``forward(images (B, 3, H, W) normalised float) -> {level: (B, C_l, ceil(H / s_l), ceil(W / s_l))}`` for
    ``out_levels`` (c2..c5: 256, 512, 1024, 2048 channels, strides 4, 8, 16, 32 px).

    Args:
        cfg: :class:`~lsvr_lsnet.config.Res2NetConfig`.
    Raises:
        ConfigError: bad ``out_levels``.
    Source: mmdetection ``Res2Net`` / ``Bottle2neck`` as used by the reference (LSNet spec §2.1).
    """

    def __init__(self, cfg: Res2NetConfig) -> None:
        super().__init__()
        bad = [lv for lv in cfg.out_levels if lv not in LEVELS]
        if bad or not cfg.out_levels:
            raise ConfigError(f"model.backbone.out_levels {list(cfg.out_levels)}: levels must be among {list(LEVELS)}")
        norm = batch_norm_layer(cfg.norm)
        self.out_levels, self.frozen_stages, self.norm_eval = tuple(cfg.out_levels), cfg.frozen_stages, cfg.norm_eval
        self.stem = _stem(cfg.deep_stem, norm)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (blocks, dcn) in enumerate(zip(BLOCKS[cfg.depth], cfg.dcn_stages, strict=True)):
            planes = 64 * 2**i
            self.add_module(f"layer{i + 1}", _layer(inplanes, planes, blocks, 1 if i == 0 else 2, cfg, norm, dcn))
            inplanes = planes * EXPANSION
        offset_convs = {id(m.conv_offset) for m in self.modules() if isinstance(m, ModulatedDeformConv2d)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in offset_convs:  # offset convs stay zero
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze()

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _frozen_modules(self) -> list[nn.Module]:
        return [] if self.frozen_stages < 0 else [self.stem, *self.stages()[: self.frozen_stages]]

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {lv: ShapeSpec(256 * 2 ** LEVELS.index(lv), STRIDES[lv]) for lv in self.out_levels}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.stem(images))  # (B, 64, H/4, W/4)
        out = {}
        for level, stage in zip(LEVELS, self.stages(), strict=True):
            x = stage(x)
            if level in self.out_levels:
                out[level] = x
            if len(out) == len(self.out_levels):
                break
        return {lv: out[lv] for lv in self.out_levels}


def load_weights(model: Res2Net, path: str) -> None:
    """Load an mmdetection-layout Res2Net ImageNet checkpoint (``state_dict`` or a dict holding one); the
    classifier (``fc.*``) is ignored and DCN offset convs keep their zero init.

    Raises:
        ConfigError: missing file, or keys / shapes that do not match (every one listed).
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.backbone.weights: {file} not found (lsvr never downloads weights)")
    state = torch.load(file, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = [k for k in own if k not in state and "conv_offset" not in k and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if missing or unexpected or shape:
        raise ConfigError(f"model.backbone.weights {file.name}: missing {missing}, unexpected {unexpected}, "
                          f"mis-shaped {shape}")
    model.load_state_dict(state, strict=False)


def build_res2net(cfg: Res2NetConfig, *, registry: Any = None) -> Res2Net:
    """Factory of the ``res2net`` backbone (weights from ``cfg.weights`` when set)."""
    model = Res2Net(cfg)
    if cfg.weights:
        load_weights(model, cfg.weights)
        model._freeze()
    return model
