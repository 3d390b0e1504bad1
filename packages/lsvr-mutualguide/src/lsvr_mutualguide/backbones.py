"""torchvision backbones modified as in the v1 reference to return stride-8 ``c3`` and stride-16 ``c4`` maps
(spec §2 "Backbones"): VGG16-BN, ResNet without the stem max-pool, ShuffleNetV2 without the max-pool.

ImageNet weights are read from torch's hub cache only (``torch.hub.get_dir()/checkpoints``); lsvr never
downloads them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from lsvr_core.api import ConfigError, Registry, ShapeSpec
from lsvr_mutualguide.config import ResNetMGConfig, ShuffleNetV2Config, VGG16BNConfig


def load_hub_weights(model: nn.Module, name: str, skip_prefixes: tuple[str, ...] = ()) -> None:
    """Load torchvision's ``IMAGENET1K_V1`` weights of model ``name`` from torch's hub cache.

    Raises:
        ConfigError: the weights file is not in the cache (the message names the file and folder).
    """
    weights = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise ConfigError(f"model.backbone.pretrained=true needs {path.name} in torch's hub cache ({path.parent}); "
                          f"lsvr never downloads weights: copy the file there or set pretrained: false")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    model.load_state_dict(state, strict=not skip_prefixes)


class TwoLevelBackbone(nn.Module):
    """``stem`` then two stages: ``forward(images (B, 3, H, W)) -> {"c3": (B, C3, H/8, W/8), "c4": (B, C4,
    H/16, W/16)}`` (sizes rounded up)."""

    def __init__(self, stem: nn.Module, stage3: nn.Module, stage4: nn.Module, channels: tuple[int, int]) -> None:
        super().__init__()
        self.stem, self.stage3, self.stage4 = stem, stage3, stage4
        self._channels = channels

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"c3": ShapeSpec(self._channels[0], 8), "c4": ShapeSpec(self._channels[1], 16)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        c3 = self.stage3(self.stem(images))
        return {"c3": c3, "c4": self.stage4(c3)}


def build_vgg16_bn(cfg: VGG16BNConfig, *, registry: Registry | None = None) -> TwoLevelBackbone:
    """VGG16-BN: ``features[0:33]`` ends at conv4_3's ReLU (512 @ 8); ``features[33:43]`` is pool4 and
    conv5_1..5_3 (512 @ 16) (``V1:models/backbone/vgg_backbone.py``). Only ``features`` is built (the
    classifier's 120M parameters are never allocated)."""
    model = nn.Module()
    model.features = make_layers(vgg_cfgs["D"], batch_norm=True)
    if cfg.pretrained:
        load_hub_weights(model, "vgg16_bn", skip_prefixes=("classifier.",))
    feats = model.features
    return TwoLevelBackbone(nn.Identity(), feats[:33], feats[33:43], (512, 512))


def build_resnet_mg(cfg: ResNetMGConfig, *, registry: Registry | None = None) -> TwoLevelBackbone:
    """ResNet with the stem max-pool omitted: layer3 at stride 8 and layer4 at stride 16
    (``V1:models/backbone/resnet_backbone.py:103-113``); 256/512 channels (18, 34) or 1024/2048 (50)."""
    name = f"resnet{cfg.depth}"
    model = getattr(torchvision.models, name)(weights=None)
    if cfg.pretrained:
        load_hub_weights(model, name, skip_prefixes=("fc.",))
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.layer1, model.layer2)
    expansion = 4 if cfg.depth == 50 else 1
    return TwoLevelBackbone(stem, model.layer3, model.layer4, (256 * expansion, 512 * expansion))


def build_shufflenet_v2(cfg: ShuffleNetV2Config, *, registry: Registry | None = None) -> TwoLevelBackbone:
    """ShuffleNetV2 without the max-pool: stage3 at stride 8 and stage4 at stride 16
    (``V1:models/backbone/shufflenet_backbone.py:62-106``); 232/464 channels at width 1.0."""
    name = "shufflenet_v2_x" + cfg.width.replace(".", "_")
    model = getattr(torchvision.models, name)(weights=None)
    if cfg.pretrained:
        load_hub_weights(model, name, skip_prefixes=("fc.", "conv5."))
    stem = nn.Sequential(model.conv1, model.stage2)
    channels = (model._stage_out_channels[2], model._stage_out_channels[3])  # noqa: SLF001
    return TwoLevelBackbone(stem, model.stage3, model.stage4, channels)
