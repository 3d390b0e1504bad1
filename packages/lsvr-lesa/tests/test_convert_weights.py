"""Weight converters for the official LESA checkpoints: reference key names and shapes (tests/reference_keys.py,
built from Chenglin-Yang/LESA_detection) -> lsvr models. Converting and loading through ``init_from`` gives the
same outputs as assigning the same tensors to the modules directly; classification BN shapes follow the
documented mapping; every unmapped / mis-shaped key is listed."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lsvr_core.api import ConversionError
from lsvr_core.cli.main import main
from lsvr_core.engine.checkpoint import load_weights
from lsvr_lesa.backbone import build_lesa_r50, build_lesa_wrn50
from lsvr_lesa.block import LESA
from lsvr_lesa.config import LESAR50Config, LESAWRN50Config
from lsvr_lesa.convert import convert_htc, convert_imagenet, convert_mask_rcnn

_spec = importlib.util.spec_from_file_location("lesa_reference_keys", Path(__file__).parent / "reference_keys.py")
ref_keys = importlib.util.module_from_spec(_spec)
sys.modules["lesa_reference_keys"] = ref_keys
_spec.loader.exec_module(ref_keys)
fpn_rpn, lesa_backbone, mask_rcnn_roi_head = ref_keys.fpn_rpn, ref_keys.lesa_backbone, ref_keys.mask_rcnn_roi_head

torch.set_num_threads(1)
SMALL = dict(width=16, max_input_size=128, attention_backend="torch", zero_init_residual=False)
LOG = logging.getLogger("test")


class _Wrap(nn.Module):
    """A model whose backbone is at ``backbone.`` (what init_from loads into)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    current = getattr(module, name)
    assert current.shape == value.shape, (name, current.shape, value.shape)
    with torch.no_grad():
        current.copy_(value)


def _set_bn(bn: nn.Module, ref: dict, key: str, select: slice | None = None) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        v = ref[f"{key}.{p}"]
        _set(bn, p, v if select is None else v[select])


def _load_directly(model: nn.Module, ref: dict, classification: bool) -> None:
    """Assign the reference tensors module by module (the oracle; independent of the converter's tables)."""
    _set(model.stem[0], "weight", ref["conv1.weight"])
    _set_bn(model.stem[1], ref, "bn1")
    for s, stage in enumerate(model.stages):
        for b, blk in enumerate(stage):
            k = f"layer{s + 1}.{b}"
            _set(blk.conv1, "weight", ref[f"{k}.conv1.weight"])
            _set_bn(blk.bn1, ref, f"{k}.bn1")
            _set(blk.conv3, "weight", ref[f"{k}.conv3.weight"])
            _set_bn(blk.bn3, ref, f"{k}.bn3")
            if blk.downsample is not None:
                _set(blk.downsample[0], "weight", ref[f"{k}.downsample.0.weight"])
                _set_bn(blk.downsample[1], ref, f"{k}.downsample.1")
            if isinstance(blk.conv2, LESA):
                lesa, c = blk.conv2, f"{k}.conv2"
                heads = lesa.binary.heads
                _set(lesa.unary.conv, "weight", ref[f"{c}.x_transform.0.weight"])
                _set(lesa.unary.mix, "weight", ref[f"{c}.x_transform.1.weight"])
                _set_bn(lesa.unary.bn, ref, f"{c}.bn_x")
                _set(lesa.binary.qkv, "weight", ref[f"{c}.qkv_transform.weight"])
                _set_bn(lesa.binary.bn_qkv, ref, f"{c}.bn_qkv")
                _set_bn(lesa.binary.bn_similarity, ref, f"{c}.bn_similarity",
                        slice(0, 2 * heads) if classification else None)
                _set_bn(lesa.binary.bn_output, ref, f"{c}.bn_output", slice(0, None, 2) if classification else None)
                _set(lesa.fusion.conv1, "weight", ref[f"{c}.reasoning.1.weight"])
                _set_bn(lesa.fusion.bn1, ref, f"{c}.reasoning.2")
                _set(lesa.fusion.conv2, "weight", ref[f"{c}.projection.0.weight"])
                _set_bn(lesa.fusion.bn2, ref, f"{c}.projection.1")
                if not classification:
                    _set(lesa.binary, "rel_h", ref[f"{c}.rel_height"])
                    _set(lesa.binary, "rel_w", ref[f"{c}.rel_width"])
                    if hasattr(lesa.unary.conv, "conv_offset"):
                        _set(lesa.unary.conv.conv_offset, "weight", ref[f"{c}.x_transform.0.conv_offset.weight"])
                        _set(lesa.unary.conv.conv_offset, "bias", ref[f"{c}.x_transform.0.conv_offset.bias"])
            else:
                _set(blk.conv2, "weight", ref[f"{k}.conv2.weight"])
                _set_bn(blk.bn2, ref, f"{k}.bn2")
                if not classification and hasattr(blk.conv2, "conv_offset"):
                    _set(blk.conv2.conv_offset, "weight", ref[f"{k}.conv2.conv_offset.weight"])
                    _set(blk.conv2.conv_offset, "bias", ref[f"{k}.conv2.conv_offset.bias"])


def _image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("wide", [False, True])
def test_imagenet_classification_checkpoint_via_cli_and_init_from(tmp_path: Path, wide: bool) -> None:
    ref = lesa_backbone(width=16, wide=wide, pe_type="classification", dcn=False, fc=True)
    src, dst = tmp_path / "checkpoint.pth", tmp_path / "lesa.pt"
    torch.save({"net": {f"module.{k}": v for k, v in ref.items()}, "epoch": 95}, src)
    assert main(["convert-weights", "lesa-imagenet", str(src), str(dst)]) == 0
    build, cfg = (build_lesa_wrn50, LESAWRN50Config) if wide else (build_lesa_r50, LESAR50Config)
    torch.manual_seed(0)
    converted = _Wrap(build(cfg(**SMALL))).eval()
    torch.manual_seed(0)  # same init for what the checkpoint does not hold (offsets, positional tables)
    direct = _Wrap(build(cfg(**SMALL))).eval()
    records = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    LOG.addHandler(handler)
    load_weights(converted, dst, LOG)
    LOG.removeHandler(handler)
    log = "\n".join(r.getMessage() for r in records)
    assert "unexpected" not in log and "shape mismatch" not in log
    own = set(converted.state_dict())
    loaded = set(torch.load(dst, weights_only=True)["model"])
    assert loaded <= own
    assert {k for k in own - loaded} == {k for k in own if "conv_offset" in k or k.endswith(("rel_h", "rel_w"))}
    _load_directly(direct.backbone, ref, classification=True)
    with torch.no_grad():
        a, b = converted.backbone(_image()), direct.backbone(_image())
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = build(cfg(**SMALL)).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(_image())["c5"], a["c5"])


def test_bn_shape_mapping_keeps_content_and_query_position_channels() -> None:
    ref = lesa_backbone(width=16, pe_type="classification", dcn=False)
    out = convert_imagenet(ref)
    sim = ref["layer3.1.conv2.bn_similarity.running_var"]  # 3G = 24: [q.k | q.r_q | k.r_k]
    assert torch.equal(out["backbone.stages.2.1.conv2.binary.bn_similarity.running_var"], sim[:16])
    bo = ref["layer4.0.conv2.bn_output.weight"]  # 2C interleaved (P V, P r_v)
    assert torch.equal(out["backbone.stages.3.0.conv2.binary.bn_output.weight"], bo[0::2])
    det = lesa_backbone(width=16, pe_type="detection_qr", dcn=False)
    kept = convert_imagenet(det)  # detection-shaped ImageNet checkpoints are copied as they are
    assert torch.equal(kept["backbone.stages.2.1.conv2.binary.bn_similarity.weight"],
                       det["layer3.1.conv2.bn_similarity.weight"])
    assert not any(k.endswith(("rel_h", "rel_w")) for k in kept)  # re-initialised, as the reference does


def test_unmapped_and_misshaped_keys_are_all_listed() -> None:
    ref = lesa_backbone(width=16, pe_type="classification", dcn=False)
    ref["layer3.1.conv2.bn_output.weight"] = torch.ones(5)
    ref["layer3.2.conv2.bn_similarity.bias"] = torch.ones(7)
    ref["layer9.0.conv1.weight"] = torch.ones(1)
    ref["head.extra"] = torch.ones(1)
    with pytest.raises(ConversionError) as err:
        convert_imagenet(ref)
    msg = str(err.value)
    assert "2 unmapped keys: head.extra, layer9.0.conv1.weight" in msg
    assert "layer3.1.conv2.bn_output.weight (5,)" in msg and "layer3.2.conv2.bn_similarity.bias (7,)" in msg


def _detector(head_cfg, backbone_cfg, num_classes: int):
    from lsvr_core.builtin.configs import FPNConfig
    from lsvr_core.models.detector import Detector
    from lsvr_core.models.fpn import build_fpn

    backbone = build_lesa_r50(backbone_cfg) if backbone_cfg.type == "lesa_r50" else build_lesa_wrn50(backbone_cfg)
    neck = build_fpn(FPNConfig(out_channels=32, in_levels=("c2", "c3", "c4", "c5"), num_extra=0),
                     backbone.output_shape())
    from lsvr_core.plugins import get_plugin_manager

    head = get_plugin_manager().build("head", head_cfg, neck.output_shape(), num_classes, "segm")
    return Detector(backbone, neck, head, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def test_mask_rcnn_checkpoint_loads_every_tensor_and_keeps_class_semantics() -> None:
    from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig

    classes = 3
    ref = {f"backbone.{k}": v for k, v in lesa_backbone(width=16).items()}
    ref.update(fpn_rpn([64, 128, 256, 512], 32))
    ref.update(mask_rcnn_roi_head(32, 64, 16, classes))
    out = convert_mask_rcnn(ref)
    head_cfg = MaskRCNNHeadConfig(maxpool_last_level=True, representation_size=64, mask_head_channels=16,
                                  roi_align_aligned=True, box_loss="l1", mask_paste_frame="original")
    model = _detector(head_cfg, LESAR50Config(**SMALL), classes).eval()
    assert set(out) == set(model.state_dict())
    model.load_state_dict(out, strict=True)
    # class layout: mmdet background last / K class-specific rows; torchvision background first
    x = torch.randn(5, 64)
    predictor = model.head.roi_heads.box_predictor
    with torch.no_grad():
        ours_cls, ours_reg = predictor(x)
        ref_cls = x @ ref["roi_head.bbox_head.fc_cls.weight"].T + ref["roi_head.bbox_head.fc_cls.bias"]
        ref_reg = x @ ref["roi_head.bbox_head.fc_reg.weight"].T + ref["roi_head.bbox_head.fc_reg.bias"]
    p_ours, p_ref = ours_cls.softmax(-1), ref_cls.softmax(-1)
    torch.testing.assert_close(p_ours[:, 1:], p_ref[:, :classes])
    torch.testing.assert_close(p_ours[:, 0], p_ref[:, classes])
    torch.testing.assert_close(ours_reg[:, 4:], ref_reg)
    logits = model.head.roi_heads.mask_predictor.mask_fcn_logits
    assert torch.equal(logits.weight[1:], ref["roi_head.mask_head.conv_logits.weight"])
    assert torch.equal(model.head.rpn.head.cls_logits.weight, ref["rpn_head.rpn_cls.weight"])


def test_mask_rcnn_misshaped_class_layers_are_listed() -> None:
    ref = {**fpn_rpn([64, 128, 256, 512], 32), **mask_rcnn_roi_head(32, 64, 16, 3)}
    ref["roi_head.bbox_head.fc_reg.weight"] = ref["roi_head.bbox_head.fc_reg.weight"][:4]
    ref["roi_head.mask_head.conv_logits.weight"] = ref["roi_head.mask_head.conv_logits.weight"][:2]
    with pytest.raises(ConversionError, match=r"2 mis-shaped keys: roi_head.bbox_head.fc_reg.weight \(4, 64\).*"
                                              r"roi_head.mask_head.conv_logits.weight \(2, 16, 1, 1\)"):
        convert_mask_rcnn(ref)
    # a Mask R-CNN checkpoint given to the HTC format: all 20 single-stage RoI keys are listed
    with pytest.raises(ConversionError, match=r"lesa-htc: 20 unmapped keys: roi_head.bbox_head.fc_cls.bias, .*"
                                              r"roi_head.mask_head.upsample.weight$"):
        convert_htc(mask_rcnn_roi_head(32, 64, 16, 3))


def test_htc_checkpoint_loads_every_tensor_and_keeps_class_semantics() -> None:
    from lsvr_core.builtin.htc_config import HTCHeadConfig

    classes = 3
    ref = {f"backbone.{k}": v for k, v in ref_keys.lesa_backbone(width=16, wide=True).items()}
    ref.update(fpn_rpn([64, 128, 256, 512], 32))
    ref.update(ref_keys.htc_roi_head(32, 64, 32, classes, semantic_classes=183))
    out = convert_htc(ref)
    head_cfg = HTCHeadConfig(representation_size=64, mask_head_channels=32)
    model = _detector(head_cfg, LESAWRN50Config(**SMALL), classes).eval()
    assert set(out) == set(model.state_dict())
    model.load_state_dict(out, strict=True)
    x = torch.randn(5, 64)
    for stage in range(3):
        with torch.no_grad():
            ours_cls, ours_reg = model.head.box_predictors[stage](x)
        p = f"roi_head.bbox_head.{stage}"
        ref_cls = x @ ref[f"{p}.fc_cls.weight"].T + ref[f"{p}.fc_cls.bias"]
        p_ours, p_ref = ours_cls.softmax(-1), ref_cls.softmax(-1)
        torch.testing.assert_close(p_ours[:, 1:], p_ref[:, :classes])
        torch.testing.assert_close(p_ours[:, 0], p_ref[:, classes])
        torch.testing.assert_close(ours_reg, x @ ref[f"{p}.fc_reg.weight"].T + ref[f"{p}.fc_reg.bias"])
    # mask head of stage 2 with information flow from heads 0, 1: same as the mmdet formula on raw tensors
    roi = torch.randn(2, 32, 14, 14)

    def conv(x, key, pad):
        return F.conv2d(x, ref[f"{key}.weight"], ref[f"{key}.bias"], padding=pad)

    def mmdet_mask_head(s, x, res):
        p = f"roi_head.mask_head.{s}"
        if res is not None:
            x = x + conv(res, f"{p}.conv_res.conv", 0).relu()
        for i in range(4):
            x = conv(x, f"{p}.convs.{i}.conv", 1).relu()
        up = F.conv_transpose2d(x, ref[f"{p}.upsample.weight"], ref[f"{p}.upsample.bias"], stride=2).relu()
        return conv(up, f"{p}.conv_logits", 0), x

    _, f0 = mmdet_mask_head(0, roi, None)
    _, f1 = mmdet_mask_head(1, roi, f0)
    expected, _ = mmdet_mask_head(2, roi, f1)
    with torch.no_grad():
        torch.testing.assert_close(model.head._mask_logits(2, roi), expected, rtol=1e-4, atol=1e-5)
