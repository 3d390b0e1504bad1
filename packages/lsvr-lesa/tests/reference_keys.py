"""State dicts with the reference's key names and shapes, built from the facts of Chenglin-Yang/LESA_detection
(``mmdet/models/backbones/resnet.py`` Bottleneck/ResNet: ``conv1``/``bn1`` stem, ``layer{s}.{b}.conv{1,2,3}``,
``bn{1,2,3}``, ``downsample.{0,1}``, mmcv DCN ``conv2.conv_offset``; ``LESA.py``: ``qkv_transform``, ``bn_qkv``,
``bn_similarity``, ``bn_output``, ``x_transform.{0,1}``, ``bn_x``, ``reasoning.{1,2}``, ``projection.{0,1}``,
``rel_height``/``rel_width`` (detection_qr) or ``relative``/``flatten_index`` (classification); mmdet 2.11
FPN ``lateral_convs``/``fpn_convs`` ConvModules, RPNHead ``rpn_conv/rpn_cls/rpn_reg``, Shared2FCBBoxHead
``shared_fcs``/``fc_cls``/``fc_reg``, FCNMaskHead ``convs``/``upsample``/``conv_logits``, HTCMaskHead
``conv_res``, FusedSemanticHead ``lateral_convs``/``convs``/``conv_embedding``/``conv_logits``).
Values are random (seeded); BN variances positive."""

from __future__ import annotations

import torch

DEPTH_50 = (3, 4, 6, 3)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def t(self, key: str, *shape: int) -> None:
        self.state[key] = torch.randn(*shape, generator=self.g) * 0.1

    def bn(self, key: str, n: int) -> None:
        self.state[f"{key}.weight"] = 1 + 0.1 * torch.randn(n, generator=self.g)
        self.state[f"{key}.bias"] = 0.1 * torch.randn(n, generator=self.g)
        self.state[f"{key}.running_mean"] = 0.1 * torch.randn(n, generator=self.g)
        self.state[f"{key}.running_var"] = 0.5 + torch.rand(n, generator=self.g)
        self.state[f"{key}.num_batches_tracked"] = torch.tensor(100)

    def conv(self, key: str, cout: int, cin: int, k: int, bias: bool = False) -> None:
        self.t(f"{key}.weight", cout, cin, k, k)
        if bias:
            self.t(f"{key}.bias", cout)


def lesa_backbone(width: int = 16, wide: bool = False, heads: int = 8, max_input: int = 128,
                  pe_type: str = "detection_qr", dcn: bool = True, prefix: str = "", seed: int = 0,
                  fc: bool = False) -> dict[str, torch.Tensor]:
    """The reference ResNet-50 (wrn: WRN-50-2) with LESA in layer3 blocks 1.. and all of layer4, DCN in
    layer2-4 (``dcn``), at reduced ``width`` (base_channels)."""
    b = _Builder(seed)
    b.conv(f"{prefix}conv1", width, 3, 7)
    b.bn(f"{prefix}bn1", width)
    inplanes = width
    for s, blocks in enumerate(DEPTH_50):
        planes = width * 2**s
        cp = planes * (2 if wide else 1)
        for i in range(blocks):
            key = f"{prefix}layer{s + 1}.{i}"
            b.conv(f"{key}.conv1", cp, inplanes, 1)
            b.bn(f"{key}.bn1", cp)
            lesa = s >= 2 and not (i == 0 and s == 2)
            use_dcn = dcn and s >= 1
            if lesa:
                c, g = cp, heads
                dqk, dv = c // g // 2, c // g
                b.t(f"{key}.conv2.qkv_transform.weight", 2 * c, c, 1)
                b.bn(f"{key}.conv2.bn_qkv", 2 * c)
                if pe_type == "classification":
                    b.bn(f"{key}.conv2.bn_similarity", 3 * g)
                    b.bn(f"{key}.conv2.bn_output", 2 * c)
                    k = 7 * 7
                    b.t(f"{key}.conv2.relative", 2 * dqk + dv, 2 * k - 1)
                    b.state[f"{key}.conv2.flatten_index"] = torch.arange(k * k)
                else:
                    b.bn(f"{key}.conv2.bn_similarity", 2 * g)
                    b.bn(f"{key}.conv2.bn_output", c)
                    side = max_input // 16 if (s == 2 or i == 0) else max_input // 32
                    b.t(f"{key}.conv2.rel_height", 2 * side - 1, dqk)
                    b.t(f"{key}.conv2.rel_width", 2 * side - 1, dqk)
                b.conv(f"{key}.conv2.x_transform.0", c, c // g, 3)
                if use_dcn:
                    b.conv(f"{key}.conv2.x_transform.0.conv_offset", 18, c, 3, bias=True)
                b.conv(f"{key}.conv2.x_transform.1", c, c, 1)
                b.bn(f"{key}.conv2.bn_x", c)
                b.conv(f"{key}.conv2.reasoning.1", c, 2 * c, 1)
                b.bn(f"{key}.conv2.reasoning.2", c)
                b.conv(f"{key}.conv2.projection.0", c, c, 1)
                b.bn(f"{key}.conv2.projection.1", c)
            else:
                b.conv(f"{key}.conv2", cp, cp, 3)
                if use_dcn:
                    b.conv(f"{key}.conv2.conv_offset", 18, cp, 3, bias=True)
                b.bn(f"{key}.bn2", cp)
            b.conv(f"{key}.conv3", 4 * planes, cp, 1)
            b.bn(f"{key}.bn3", 4 * planes)
            if i == 0:
                b.conv(f"{key}.downsample.0", 4 * planes, inplanes, 1)
                b.bn(f"{key}.downsample.1", 4 * planes)
            inplanes = 4 * planes
    if fc:
        b.t(f"{prefix}fc.weight", 1000, inplanes)
        b.t(f"{prefix}fc.bias", 1000)
    return b.state


def fpn_rpn(in_channels: list[int], channels: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """mmdet FPN (num_outs 5, P6 by max-pool: no parameters) and RPNHead (3 anchors)."""
    b = _Builder(seed)
    for i, cin in enumerate(in_channels):
        b.conv(f"neck.lateral_convs.{i}.conv", channels, cin, 1, bias=True)
        b.conv(f"neck.fpn_convs.{i}.conv", channels, channels, 3, bias=True)
    b.conv("rpn_head.rpn_conv", channels, channels, 3, bias=True)
    b.conv("rpn_head.rpn_cls", 3, channels, 1, bias=True)
    b.conv("rpn_head.rpn_reg", 12, channels, 1, bias=True)
    return b.state


def mask_rcnn_roi_head(channels: int, fc: int, mask_channels: int, classes: int, seed: int = 2
                       ) -> dict[str, torch.Tensor]:
    """Shared2FCBBoxHead (class-specific) + FCNMaskHead (4 convs)."""
    b = _Builder(seed)
    b.t("roi_head.bbox_head.shared_fcs.0.weight", fc, channels * 49)
    b.t("roi_head.bbox_head.shared_fcs.0.bias", fc)
    b.t("roi_head.bbox_head.shared_fcs.1.weight", fc, fc)
    b.t("roi_head.bbox_head.shared_fcs.1.bias", fc)
    b.t("roi_head.bbox_head.fc_cls.weight", classes + 1, fc)
    b.t("roi_head.bbox_head.fc_cls.bias", classes + 1)
    b.t("roi_head.bbox_head.fc_reg.weight", 4 * classes, fc)
    b.t("roi_head.bbox_head.fc_reg.bias", 4 * classes)
    for i in range(4):
        b.conv(f"roi_head.mask_head.convs.{i}.conv", mask_channels, channels if i == 0 else mask_channels, 3, True)
    b.t("roi_head.mask_head.upsample.weight", mask_channels, mask_channels, 2, 2)
    b.t("roi_head.mask_head.upsample.bias", mask_channels)
    b.conv("roi_head.mask_head.conv_logits", classes, mask_channels, 1, bias=True)
    return b.state


def htc_roi_head(channels: int, fc: int, mask_channels: int, classes: int, semantic_classes: int = 183,
                 seed: int = 3) -> dict[str, torch.Tensor]:
    """3 class-agnostic Shared2FCBBoxHeads, 3 HTCMaskHeads (conv_res in stages 1, 2), FusedSemanticHead."""
    b = _Builder(seed)
    for s in range(3):
        p = f"roi_head.bbox_head.{s}"
        b.t(f"{p}.shared_fcs.0.weight", fc, channels * 49)
        b.t(f"{p}.shared_fcs.0.bias", fc)
        b.t(f"{p}.shared_fcs.1.weight", fc, fc)
        b.t(f"{p}.shared_fcs.1.bias", fc)
        b.t(f"{p}.fc_cls.weight", classes + 1, fc)
        b.t(f"{p}.fc_cls.bias", classes + 1)
        b.t(f"{p}.fc_reg.weight", 4, fc)
        b.t(f"{p}.fc_reg.bias", 4)
        p = f"roi_head.mask_head.{s}"
        if s > 0:
            b.conv(f"{p}.conv_res.conv", mask_channels, mask_channels, 1, bias=True)
        for i in range(4):
            b.conv(f"{p}.convs.{i}.conv", mask_channels, channels if i == 0 else mask_channels, 3, True)
        b.t(f"{p}.upsample.weight", mask_channels, mask_channels, 2, 2)
        b.t(f"{p}.upsample.bias", mask_channels)
        b.conv(f"{p}.conv_logits", classes, mask_channels, 1, bias=True)
    p = "roi_head.semantic_head"
    for i in range(5):
        b.conv(f"{p}.lateral_convs.{i}.conv", channels, channels, 1, bias=True)
    for i in range(4):
        b.conv(f"{p}.convs.{i}.conv", channels, channels, 3, bias=True)
    b.conv(f"{p}.conv_embedding.conv", channels, channels, 1, bias=True)
    b.conv(f"{p}.conv_logits", semantic_classes, channels, 1, bias=True)
    return b.state
