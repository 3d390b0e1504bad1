"""Feature pyramid network (Lin et al. 2017) over ``torchvision.ops.FeaturePyramidNetwork``, with extra
stride-2 levels (P6, P7, ...) from C5 or P5 as in RetinaNet and FCOS."""

from __future__ import annotations

import re

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from lsvr_core.builtin.configs import FPNConfig
from lsvr_core.contracts import Registry, ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.norm import group_norm_layer


class ExtraLevels(ExtraFPNBlock):
    """``num_extra`` stride-2 3x3 convs appended after the last pyramid level.

    The first takes the last input feature (``from_input=True``, i.e. C5) or the last output (P5); each later
    one takes the previous extra level, after a ReLU when ``relu`` is set (RetinaNet/FCOS). With ``norm`` each
    conv is bias-free and followed by GroupNorm(32) (the LSNet reference FPN, LSNet spec §2.1).
    """

    def __init__(self, in_channels: int, out_channels: int, names: list[str], from_input: bool, relu: bool,
                 norm: bool = False) -> None:
        super().__init__()
        self.names = names
        self.from_input = from_input
        self.relu = relu
        self.convs = nn.ModuleList()
        for i in range(len(names)):
            conv = nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, stride=2, padding=1,
                             bias=not norm)
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            self.convs.append(nn.Sequential(conv, group_norm_layer(32)(out_channels)) if norm else conv)

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        feature = x[-1] if self.from_input else results[-1]
        for i, conv in enumerate(self.convs):
            if i > 0 and self.relu:
                feature = feature.relu()
            feature = conv(feature)  # (B, C_out, ceil(H_prev / 2), ceil(W_prev / 2))
            results.append(feature)
        return results, names + self.names


def _level_number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    if match is None:
        raise ConfigError(f"model.neck.in_levels: level {name!r} must end in its number (e.g. 'c3')")
    return int(match.group(1))


class FPN(nn.Module):
    """``forward({c_l: (B, C_l, H_l, W_l)}) -> {p_l: (B, out_channels, H_l, W_l)}`` plus extra levels.

    Output names follow the input level numbers (``c3`` -> ``p3``); extra levels continue the numbering
    (``p6``, ``p7``) with doubling strides.

    Args:
        input_shape: the backbone's ``output_shape()``.
        in_levels: levels of ``input_shape`` to use, fine to coarse.
        out_channels: channels of every output level.
        num_extra: number of extra stride-2 levels.
        extra_source: ``c5`` (last input level) or ``p5`` (last pyramid level) feeds the first extra level.
        extra_relu: ReLU before each extra level after the first.
        norm: ``none`` or ``gn`` (GroupNorm with 32 groups in the lateral and output convs).
        extra_norm: GroupNorm(32) in the extra-level convs too (needs ``norm='gn'``; LSNet spec §2.1).
    Raises:
        ConfigError: a level missing from ``input_shape``, ``gn`` with channels not divisible by 32, or
            ``extra_norm`` without ``norm='gn'``.
    """

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, ...], out_channels: int,
                 num_extra: int = 2, extra_source: str = "p5", extra_relu: bool = True, norm: str = "none",
                 extra_norm: bool = False) -> None:
        super().__init__()
        missing = [lv for lv in in_levels if lv not in input_shape]
        if missing or not in_levels:
            raise ConfigError(f"model.neck.in_levels {list(in_levels)}: {missing or 'empty'} not produced by the "
                              f"backbone, which outputs {list(input_shape)}")
        if norm == "gn" and out_channels % 32:
            raise ConfigError(f"model.neck.out_channels={out_channels} must be divisible by 32 for norm: gn")
        if extra_norm and norm != "gn":
            raise ConfigError(f"model.neck.extra_norm=true needs model.neck.norm: gn (got norm: {norm})")
        self.in_levels = tuple(in_levels)
        numbers = [_level_number(lv) for lv in in_levels]
        names = [f"p{n}" for n in numbers]
        extra_names = [f"p{numbers[-1] + i + 1}" for i in range(num_extra)]
        last = input_shape[in_levels[-1]]
        self._shape = {name: ShapeSpec(out_channels, input_shape[lv].stride)
                       for name, lv in zip(names, in_levels, strict=True)}
        for i, name in enumerate(extra_names):
            self._shape[name] = ShapeSpec(out_channels, last.stride * 2 ** (i + 1))
        self.names = names
        from_input = extra_source == "c5"
        extra = None
        if num_extra:
            extra = ExtraLevels(last.channels if from_input else out_channels, out_channels, extra_names,
                                from_input, extra_relu, extra_norm)
        self.fpn = FeaturePyramidNetwork(
            [input_shape[lv].channels for lv in in_levels], out_channels, extra_blocks=extra,
            norm_layer=group_norm_layer(32) if norm == "gn" else None,
        )

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride (pixels) of each output level, fine to coarse."""
        return dict(self._shape)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs = {name: features[lv] for name, lv in zip(self.names, self.in_levels, strict=True)}
        return dict(self.fpn(inputs))


def build_fpn(cfg: FPNConfig, input_shape: dict[str, ShapeSpec], *, registry: Registry | None = None) -> FPN:
    """Build the ``fpn`` neck (factory of the built-in plugin); see :class:`FPN`."""
    return FPN(input_shape, cfg.in_levels, cfg.out_channels, cfg.num_extra, cfg.extra_source, cfg.extra_relu,
               cfg.norm, cfg.extra_norm)
