"""CenterNet's up-sampling neck for ResNet backbones (paper §5 "ResNet": three up-convolutions, stride 32 -> 4)."""

from __future__ import annotations

from torch import Tensor, nn

from lsvr_centernet.config import UpsampleNeckConfig
from lsvr_core.api import ConfigError, ShapeSpec

_LATERAL = ("c4", "c3", "c2")  # the backbone level each stage's output matches in stride


def _stage(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        nn.ConvTranspose2d(out_ch, out_ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UpsampleNeck(nn.Module):
    """``forward({"c5": (B, C5, H/32, W/32), ...}) -> {out_level: (B, channels[-1], H/4, W/4)}``.

    Each stage doubles the resolution (transposed conv 4x4, stride 2, padding 1: exactly x2), so the output
    stride is the ``c5`` stride / 8. With ``lateral``, stage ``i`` adds a 1x1 conv of ``c4`` / ``c3`` / ``c2``
    (same stride as its output); the image is padded to a multiple of 32, so the sizes agree.
    """

    def __init__(self, cfg: UpsampleNeckConfig, input_shape: dict[str, ShapeSpec]) -> None:
        super().__init__()
        needed = ("c5", *_LATERAL) if cfg.lateral else ("c5",)
        missing = [lv for lv in needed if lv not in input_shape]
        if missing:
            raise ConfigError(f"neck centernet_upsample needs backbone levels {', '.join(needed)}; missing "
                              f"{', '.join(missing)} (backbone gives {', '.join(input_shape)}; set out_levels)")
        self.cfg = cfg
        in_ch, stride = input_shape["c5"].channels, input_shape["c5"].stride
        self.stages = nn.ModuleList()
        self.laterals = nn.ModuleList()
        for level, out_ch in zip(_LATERAL, cfg.channels, strict=True):
            self.stages.append(_stage(in_ch, out_ch))
            if cfg.lateral:
                self.laterals.append(nn.Conv2d(input_shape[level].channels, out_ch, 1))
            in_ch, stride = out_ch, stride // 2
        self._shape = {cfg.out_level: ShapeSpec(in_ch, stride)}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shape)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        x = features["c5"]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.cfg.lateral:
                x = x + self.laterals[i](features[_LATERAL[i]])
        return {self.cfg.out_level: x}


def build_upsample_neck(cfg: UpsampleNeckConfig, input_shape: dict[str, ShapeSpec], *,
                        registry: object = None) -> UpsampleNeck:
    """Neck factory (``registry`` unused: the neck has no nested components)."""
    del registry
    return UpsampleNeck(cfg, input_shape)
