"""Config models of the LESA backbones (torch-free).

Defaults follow the reference detection configs (LESA spec §2, §3.6, §4.1): LESA in layer3 blocks 2..6 and
every layer4 block, 3x3 DCN (v1, offset groups 1) in the other conv2s of c3..c5 and in the LESA unary
branch, 8 heads, frozen stem + stage 1, BatchNorm statistics frozen (``norm_eval``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lsvr_core.api import BackboneConfig


class LESAResNetBaseConfig(BackboneConfig):
    """Fields shared by ``lesa_r50`` and ``lesa_wrn50`` (see :mod:`lsvr_lesa.backbone`)."""

    type: str
    width: int = Field(64, gt=0, description="stem channels and stage-1 planes (64 in ResNet-50; smaller values "
                                             "give a reduced-width model for tests)")
    heads: int = Field(8, gt=0, description="attention heads G; LESA channels must be divisible by 2 G")
    lesa_stages: tuple[bool, bool, bool, bool] = Field(
        (False, False, True, True), description="stages c2..c5 with LESA blocks (stage_with_lesa)")
    first_conv_stages: tuple[bool, bool, bool, bool] = Field(
        (True, True, True, False),
        description="keep a plain (or DCN) conv in the first block of a LESA stage (stage_with_first_conv); "
                    "false makes every block LESA, including the strided first one")
    dcn_stages: tuple[bool, bool, bool, bool] = Field(
        (False, True, True, True), description="deformable 3x3 conv2 (and LESA unary conv) in stages c2..c5")
    dcn: Literal["dcn_v1", "dcn_v2"] = Field(
        "dcn_v1", description="deformable conv flavour from lsvr-ops-triton (the reference uses v1)")
    max_input_size: int = Field(
        1024, gt=0, description="largest padded input side (pixels); relative-position tables are sized for it "
                                "and indexed by each feature map's actual height and width")
    frozen_stages: int = Field(1, ge=-1, le=4, description="-1: none; 0: stem; k: stem and stages 1..k")
    norm: Literal["bn", "frozen_bn", "syncbn"] = Field(
        "bn", description="norm of the ResNet trunk (LESA's own norms are always BatchNorm)")
    norm_eval: bool = Field(True, description="keep every BatchNorm (incl. LESA's logit BatchNorm) in eval mode "
                                              "while training; affine parameters still train")
    with_cp: bool = Field(False, description="checkpoint LESA's unary and binary terms (recompute in backward)")
    attention_backend: Literal["auto", "triton", "torch", "flex", "reference"] = Field(
        "auto", description="relpos_attention backend; auto: LSVR_KERNEL_BACKEND / device")
    out_levels: tuple[str, ...] = ("c2", "c3", "c4", "c5")
    zero_init_residual: bool = Field(
        True, description="zero-initialise each block's last BatchNorm weight (bn3), as the reference's mmdet "
                          "ResNet does when not loading a checkpoint (resnet.py init_weights, default True); "
                          "init_from weights overwrite it")

    @model_validator(mode="after")
    def _check(self) -> LESAResNetBaseConfig:
        bad = [lv for lv in self.out_levels if lv not in ("c2", "c3", "c4", "c5")]
        if bad or not self.out_levels:
            raise ValueError(f"out_levels {list(self.out_levels)}: levels must be among c2, c3, c4, c5")
        return self


    def output_strides(self) -> dict[str, int]:
        return {lv: 2 ** int(lv[1:]) for lv in self.out_levels}


class LESAR50Config(LESAResNetBaseConfig):
    """LESA-ResNet-50 (LESA spec §2, Mask R-CNN config)."""

    type: Literal["lesa_r50"] = "lesa_r50"


class LESAWRN50Config(LESAResNetBaseConfig):
    """LESA-WRN-50-2: bottleneck width doubled, outputs as ResNet-50 (LESA spec §2, ``wrn=True``)."""

    type: Literal["lesa_wrn50"] = "lesa_wrn50"
    max_input_size: int = Field(1280, gt=0, description="largest padded input side (pixels)")
