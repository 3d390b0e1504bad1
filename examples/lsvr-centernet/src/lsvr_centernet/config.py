"""Config models of the CenterNet components (torch-free: imported at registration).

Paper: Zhou, Wang, Krähenbühl, "Objects as Points", arXiv 1904.07850 (2019), §3 (heatmap with Gaussian
targets, penalty-reduced focal loss alpha 2 / beta 4, size and offset L1 losses weighted 0.1 and 1),
§4 (3x3 max-pool peak extraction, top 100 peaks) and §5 / appendix (ResNet with three up-convolutions to
stride 4).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from lsvr_core.api import HeadConfig, L1LossConfig, LossConfig, NeckConfig, Slot


class CenterNetFocalLossConfig(LossConfig):
    """Penalty-reduced pixel-wise focal loss on a Gaussian heatmap (paper eq. 1)."""

    type: Literal["centernet_focal"] = "centernet_focal"
    alpha: float = Field(2.0, ge=0, description="focusing exponent on (1 - p) at peaks and p elsewhere")
    beta: float = Field(4.0, ge=0, description="penalty reduction (1 - Y)^beta of negatives near a peak")
    loss_weight: float = Field(1.0, ge=0)


class UpsampleNeckConfig(NeckConfig):
    """The paper's ResNet neck: from ``c5`` (stride 32), three x2 up-sampling stages to stride 4.

    Each stage is conv 3x3 -> BN -> ReLU -> transposed conv 4x4 stride 2 -> BN -> ReLU (the paper uses a
    deformable 3x3 conv; plain here). ``lateral`` adds a 1x1 projection of ``c4`` / ``c3`` / ``c2`` after
    each up-sampling (a U-Net-style skip, not in the paper's ResNet variant), which helps a network trained
    from scratch.
    """

    type: Literal["centernet_upsample"] = "centernet_upsample"
    channels: tuple[int, int, int] = Field((256, 128, 64), description="output channels of the three stages")
    lateral: bool = Field(False, description="add 1x1-projected c4 / c3 / c2 after each up-sampling")
    out_level: str = Field("p2", description="name of the stride-4 output level")

    def input_level_names(self) -> tuple[str, ...]:
        """The backbone levels read (checked by ``lsvr validate``): ``c5``, and ``c4``, ``c3``, ``c2`` with lateral."""
        return ("c5", "c4", "c3", "c2") if self.lateral else ("c5",)

    def output_strides(self, inputs: dict[str, int]) -> dict[str, int] | None:
        """One level, ``out_level``, at the ``c5`` stride / 8."""
        return {self.out_level: inputs["c5"] // 8} if "c5" in inputs else None


class CenterNetHeadConfig(HeadConfig):
    """CenterNet head on one stride-4 (or any single) level: class heatmap, size and offset regression."""

    type: Literal["centernet"] = "centernet"
    in_level: str = Field("p2", description="the neck level the head reads (one level)")
    head_channels: int = Field(64, gt=0, description="3x3 conv width of each branch (paper: 64 for ResNet)")
    heatmap_bias: float = Field(-2.19, description="initial heatmap logit bias (paper: -2.19, p = 0.1)")
    min_overlap: float = Field(0.7, gt=0, lt=1, description="Gaussian radius: min IoU of a box shifted by r")
    center_field: str = Field("centernet_centers", description="declared target field holding the object centres")
    # nested slots and the interface each calls (lsvr_core.hookspecs): the resolver offers only what fits
    loss_heatmap: Annotated[LossConfig, Slot("heatmap_loss")] = CenterNetFocalLossConfig()
    loss_size: Annotated[LossConfig, Slot("regression_loss")] = L1LossConfig(loss_weight=0.1)
    loss_offset: Annotated[LossConfig, Slot("regression_loss")] = L1LossConfig(loss_weight=1.0)
    top_k: int = Field(100, gt=0, description="peaks kept per image (paper: 100)")
    score_thr: float = Field(0.0, ge=0, le=1, description="drop peaks scoring below this after top-k")

    def input_level_names(self) -> tuple[str, ...]:
        """The one neck level read (checked by ``lsvr validate``)."""
        return (self.in_level,)
