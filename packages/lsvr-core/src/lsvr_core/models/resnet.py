"""ResNet / ResNeXt backbones over torchvision, returning ``c2``..``c5`` feature maps.

Options: frozen stages, the norm layer (BatchNorm, frozen BatchNorm or SyncBatchNorm), BatchNorm kept in eval
mode while training (``norm_eval``), DCNv2 3x3 convs in chosen stages (from the ``dcn_v2`` layer registered
by lsvr-ops-triton) and ImageNet weights read from torch's hub cache (never downloaded).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from lsvr_core.builtin.configs import ResNetConfig
from lsvr_core.contracts import Registry, ShapeSpec
from lsvr_core.errors import ConfigError, PluginError
from lsvr_core.models.norm import FrozenStagesMixin, batch_norm_layer

LEVELS = ("c2", "c3", "c4", "c5")
STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
_WIDTHS = {"c2": 64, "c3": 128, "c4": 256, "c5": 512}  # planes of each stage before block expansion


class ResNet(FrozenStagesMixin):
    """A torchvision ResNet trunk (stem and stages ``layer1..layer4``) without the classifier.

    ``forward(images (B, 3, H, W) float32, normalised) -> {level: (B, C_l, ceil(H / s_l), ceil(W / s_l))}`` for
    the levels in ``out_levels`` (``c2``..``c5``, strides 4, 8, 16, 32 pixels).

    Args:
        trunk: a ``torchvision.models.ResNet`` (its ``fc`` and ``avgpool`` are dropped).
        out_levels: levels to return, in order.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and stages 1..k (``c2``..``c{k+1}``); frozen
            parameters get ``requires_grad=False`` and their BatchNorms stay in eval mode.
        norm_eval: keep every BatchNorm in eval mode while training (statistics are not updated).
    """

    def __init__(self, trunk: torchvision.models.ResNet, out_levels: tuple[str, ...], frozen_stages: int,
                 norm_eval: bool) -> None:
        super().__init__()
        bad = [lv for lv in out_levels if lv not in LEVELS]
        if bad or not out_levels:
            raise ConfigError(f"model.backbone.out_levels {list(out_levels)}: levels must be among {list(LEVELS)}")
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self._num_stages = max(LEVELS.index(lv) for lv in out_levels) + 1  # stages after the last level are dropped
        self.stages = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4][: self._num_stages])
        self.out_levels = tuple(out_levels)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        expansion = 4 if isinstance(trunk.layer1[0], Bottleneck) else 1
        self._channels = {lv: _WIDTHS[lv] * expansion for lv in LEVELS}
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem, *self.stages[: self.frozen_stages]]

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Channels and stride (pixels) of each returned level."""
        return {lv: ShapeSpec(self._channels[lv], STRIDES[lv]) for lv in self.out_levels}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.stem(images)  # (B, 64, H/4, W/4)
        out: dict[str, Tensor] = {}
        for level, stage in zip(LEVELS, self.stages, strict=False):  # stages past the last out level are dropped
            x = stage(x)  # (B, C_l, ceil(H/s_l), ceil(W/s_l))
            if level in self.out_levels:
                out[level] = x
        return {lv: out[lv] for lv in self.out_levels}


def _torchvision_name(depth: int, groups: int, width_per_group: int) -> str | None:
    """Name of the torchvision model with these hyper-parameters (for its ImageNet weights), or None."""
    if groups == 1 and width_per_group == 64:
        return f"resnet{depth}"
    if groups == 1 and width_per_group == 128 and depth in (50, 101):
        return f"wide_resnet{depth}_2"
    known = {(50, 32, 4): "resnext50_32x4d", (101, 32, 8): "resnext101_32x8d", (101, 64, 4): "resnext101_64x4d"}
    return known.get((depth, groups, width_per_group))


def pretrained_path(depth: int, groups: int = 1, width_per_group: int = 64) -> Path:
    """Where torch's hub cache keeps the torchvision ImageNet (``IMAGENET1K_V1``) weights of this trunk.

    Raises:
        ConfigError: torchvision ships no ImageNet weights for this (depth, groups, width_per_group).
    """
    name = _torchvision_name(depth, groups, width_per_group)
    if name is None:
        raise ConfigError(f"model.backbone.pretrained: torchvision has no ImageNet weights for depth={depth}, "
                          f"groups={groups}, width_per_group={width_per_group}")
    weights = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_pretrained(trunk: nn.Module, cfg: ResNetConfig) -> None:
    path = pretrained_path(cfg.depth, cfg.groups, cfg.width_per_group)
    if not path.is_file():
        raise ConfigError(
            f"model.backbone.pretrained=true needs the torchvision ImageNet weights file {path.name} in torch's "
            f"hub cache ({path.parent}); lsvr never downloads weights (runs are offline): copy the file there "
            f"or set pretrained: false"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.") and "offset" not in k and "mask" not in k]
    if missing or unexpected:
        raise ConfigError(f"{path.name} does not match resnet depth={cfg.depth}: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")


def _dcn_layer(conv: nn.Conv2d, registry: Registry | None) -> nn.Module:
    """A DCNv2 layer with ``conv``'s geometry from the ``("layer", "dcn_v2")`` component of ``registry``
    (registered by lsvr-ops-triton)."""
    if registry is None:
        raise ConfigError("model.backbone.dcn_stages: build_resnet needs registry= (the plugin manager) to find "
                          "the 'dcn_v2' layer")
    try:
        spec = registry.get("layer", "dcn_v2")
    except PluginError:
        raise ConfigError("model.backbone.dcn_stages needs the 'dcn_v2' layer: install lsvr-ops-triton "
                          "(pip install lsvr-ops-triton) or set dcn_stages to all false") from None
    layer = spec.build(None, in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=3,
                       stride=conv.stride[0], padding=conv.padding[0], dilation=conv.dilation[0],
                       groups=conv.groups, bias=False, registry=registry)
    weight = getattr(layer, "weight", None)
    if isinstance(weight, Tensor) and weight.shape == conv.weight.shape:
        with torch.no_grad():  # start from the plain conv's weights (the offsets start at zero)
            weight.copy_(conv.weight)
    return layer


def _add_dcn(trunk: torchvision.models.ResNet, dcn_stages: tuple[bool, ...], registry: Registry | None) -> None:
    """Replace ``conv2`` (the strided 3x3 of a Bottleneck, the second 3x3 of a BasicBlock) by DCNv2 in the
    stages flagged in ``dcn_stages`` (c2..c5)."""
    for enabled, stage in zip(dcn_stages, (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4), strict=True):
        if not enabled:
            continue
        for block in stage:
            assert isinstance(block, (BasicBlock, Bottleneck))
            block.conv2 = _dcn_layer(block.conv2, registry)


def build_resnet(cfg: ResNetConfig, *, registry: Registry | None = None) -> ResNet:
    """Build the ``resnet`` backbone (factory of the built-in plugin).

    ``zero_init_residual`` zeroes the last BatchNorm weight of every block before pretrained weights (if any)
    are loaded over it (torchvision's and mmdet's ``zero_init_residual``).

    Raises:
        ConfigError: DCN requested without lsvr-ops-triton, pretrained weights not in the hub cache, or bad
            ``out_levels`` / ``groups`` for a BasicBlock depth.
    """
    if cfg.depth in (18, 34) and (cfg.groups != 1 or cfg.width_per_group != 64):
        raise ConfigError(f"model.backbone: ResNet-{cfg.depth} (BasicBlock) supports only groups=1, "
                          f"width_per_group=64; got {cfg.groups}, {cfg.width_per_group}")
    builder = getattr(torchvision.models, f"resnet{cfg.depth}")
    trunk = builder(weights=None, groups=cfg.groups, width_per_group=cfg.width_per_group,
                    norm_layer=batch_norm_layer(cfg.norm), zero_init_residual=cfg.zero_init_residual)
    if cfg.pretrained:
        _load_pretrained(trunk, cfg)
    if any(cfg.dcn_stages):
        _add_dcn(trunk, cfg.dcn_stages, registry)
    return ResNet(trunk, cfg.out_levels, cfg.frozen_stages, cfg.norm_eval)
