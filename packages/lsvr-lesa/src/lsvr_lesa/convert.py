"""Weight converters for the official LESA checkpoints (``lsvr convert-weights FORMAT SRC DST``):

* ``lesa-imagenet``: ImageNet-pretrained LESA-ResNet-50 / LESA-WRN-50-2 (``lesa_pretrained_imagenet``
  checkpoints; ``net`` entry) -> ``backbone.*`` of a ``lesa_r50`` / ``lesa_wrn50`` model. Drops what the
  reference's loader drops (``fc.*``, positional tables) and maps classification BN shapes to detection
  shapes (LESA spec §3.6; see :mod:`lsvr_lesa.convert_backbone`). DCN offsets and the relative-position
  tables stay freshly initialised (reported as missing by ``init_from``), as in the reference.
* ``lesa-mask-rcnn``: the LESA-R50 Mask R-CNN detection checkpoint (mmdet 2.11) -> the whole detector
  (``backbone``, ``fpn`` neck with P2-P5, ``mask_rcnn`` head with ``maxpool_last_level``).
* ``lesa-htc``: the LESA-WRN50 HTC detection checkpoint -> ``backbone``, ``fpn`` neck and ``htc`` head.

Each raises :class:`ConversionError` listing every unmapped and every mis-shaped key.
"""

from __future__ import annotations

from torch import Tensor

from lsvr_core.api import ConversionError
from lsvr_lesa.convert_backbone import convert_backbone
from lsvr_lesa.convert_mmdet import HTC, MASK_RCNN, Rule, apply_rules


def _fail_if(unmapped: list[str], misshaped: list[str], what: str) -> None:
    if unmapped or misshaped:
        parts = []
        if unmapped:
            parts.append(f"{len(unmapped)} unmapped keys: {', '.join(sorted(unmapped))}")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped keys: {'; '.join(sorted(misshaped))}")
        raise ConversionError(f"{what}: " + "; ".join(parts))


def convert_imagenet(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """ImageNet LESA backbone checkpoint -> ``backbone.*`` (format ``lesa-imagenet``)."""
    converted, unmapped, misshaped = convert_backbone(state, imagenet=True)
    _fail_if(unmapped, misshaped, "lesa-imagenet")
    return {f"backbone.{k}": v for k, v in converted.items()}


def _rows(state: dict[str, Tensor], key: str) -> int | None:
    return int(state[key].shape[0]) if key in state else None


def _check_mask_rcnn(state: dict[str, Tensor]) -> list[str]:
    """Shape consistency of the class-dependent layers: fc_cls K + 1, fc_reg 4 K, conv_logits K."""
    bad = []
    k = _rows(state, "roi_head.bbox_head.fc_cls.weight")
    if k is None:
        return bad
    k -= 1
    for key, want in (("roi_head.bbox_head.fc_reg.weight", 4 * k), ("roi_head.mask_head.conv_logits.weight", k)):
        rows = _rows(state, key)
        if rows is not None and rows != want:
            bad.append(f"{key} {tuple(state[key].shape)} (expected {want} rows for {k} classes, class-specific)")
    return bad


def _check_htc(state: dict[str, Tensor]) -> list[str]:
    """Per stage: fc_cls K + 1, class-agnostic fc_reg 4, conv_logits K."""
    bad = []
    for stage in range(3):
        k = _rows(state, f"roi_head.bbox_head.{stage}.fc_cls.weight")
        if k is None:
            continue
        k -= 1
        for key, want in ((f"roi_head.bbox_head.{stage}.fc_reg.weight", 4),
                          (f"roi_head.mask_head.{stage}.conv_logits.weight", k)):
            rows = _rows(state, key)
            if rows is not None and rows != want:
                bad.append(f"{key} {tuple(state[key].shape)} (expected {want} rows)")
    return bad


def _convert_detector(state: dict[str, Tensor], rules: list[Rule], misshaped: list[str],
                      what: str) -> dict[str, Tensor]:
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    converted, unmapped_b, misshaped_b = convert_backbone(backbone, imagenet=False)
    head, unmapped_h = apply_rules(rest, rules)
    _fail_if([f"backbone.{k}" for k in unmapped_b] + unmapped_h, misshaped + misshaped_b, what)
    return {**{f"backbone.{k}": v for k, v in converted.items()}, **head}


def convert_mask_rcnn(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """LESA-R50 Mask R-CNN checkpoint (mmdet 2.11) -> lsvr detector (format ``lesa-mask-rcnn``)."""
    return _convert_detector(state, MASK_RCNN, _check_mask_rcnn(state), "lesa-mask-rcnn")


def convert_htc(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """LESA-WRN50 HTC checkpoint (mmdet 2.11) -> lsvr detector with the ``htc`` head (format ``lesa-htc``)."""
    return _convert_detector(state, HTC, _check_htc(state), "lesa-htc")
