"""The learnable parts of HTC besides the RPN: a cascade stage's box predictor, the HTC mask head with its
information-flow input, and the fused semantic head (mmdet 2.11 ``Shared2FCBBoxHead`` with class-agnostic
regression, ``HTCMaskHead``, ``FusedSemanticHead``; LESA spec §4.2). Conv + ReLU pairs are
``nn.Sequential(conv, ReLU)`` (mmdet's ``ConvModule`` without norm)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _conv_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class CascadePredictor(nn.Module):
    """``(R, representation) -> (class logits (R, K + 1), background at 0; deltas (R, 4) class-agnostic)``."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class HTCMaskHead(nn.Module):
    """FCN mask head with mask information flow (HTC §3.2).

    ``forward(x (R, C, S, S), res (R, M, S, S) or None, return_logits) -> (logits (R, K, 2S, 2S) or None,
    features (R, M, S, S))``: ``x + conv_res(res)`` (1x1 M -> C, when given) -> ``num_convs`` 3x3 conv + ReLU (the
    features handed to the next stage) -> 2x2 deconv + ReLU -> 1x1 class-specific logits (no background).
    """

    def __init__(self, in_channels: int, channels: int, num_convs: int, num_classes: int, with_conv_res: bool) -> None:
        super().__init__()
        self.conv_res = _conv_relu(channels, in_channels, 1) if with_conv_res else None  # M -> C
        self.convs = nn.ModuleList([_conv_relu(in_channels if i == 0 else channels, channels, 3)
                                    for i in range(num_convs)])
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, 2)
        self.logits = nn.Conv2d(channels, num_classes, 1)
        for m in (self.upsample, self.logits):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, res: Tensor | None = None, return_logits: bool = True) -> tuple[Tensor | None, Tensor]:
        if res is not None:
            if self.conv_res is None:
                raise ValueError("HTCMaskHead without conv_res (the first stage) takes no information-flow input")
            x = x + self.conv_res(res)
        for conv in self.convs:
            x = conv(x)
        logits = self.logits(F.relu(self.upsample(x))) if return_logits else None
        return logits, x


class FusedSemanticHead(nn.Module):
    """Semantic segmentation over fused FPN levels (HTC §3.3).

    ``forward([p_l (B, C, H_l, W_l)]) -> (logits (B, K, H_f, W_f), embedding (B, C, H_f, W_f))`` at the fusion
    level f: each level's 1x1 lateral conv + ReLU, resized bilinearly (``align_corners=True``) to level f and
    summed, ``num_convs`` 3x3 conv + ReLU, then 1x1 logits and a 1x1 conv + ReLU embedding (pooled into the
    RoI features).
    """

    def __init__(self, channels: int, num_levels: int, fusion_level: int, num_convs: int, num_classes: int) -> None:
        super().__init__()
        self.fusion_level = fusion_level
        self.lateral_convs = nn.ModuleList([_conv_relu(channels, channels, 1) for _ in range(num_levels)])
        self.convs = nn.ModuleList([_conv_relu(channels, channels, 3) for _ in range(num_convs)])
        self.conv_embedding = _conv_relu(channels, channels, 1)
        self.conv_logits = nn.Conv2d(channels, num_classes, 1)
        nn.init.kaiming_normal_(self.conv_logits.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv_logits.bias)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor]:
        x = self.lateral_convs[self.fusion_level](feats[self.fusion_level])
        size = tuple(x.shape[-2:])
        for i, feat in enumerate(feats):
            if i != self.fusion_level:
                feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=True)
                x = x + self.lateral_convs[i](feat)
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(x), self.conv_embedding(x)
