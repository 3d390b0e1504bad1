"""Key mapping from the reference's mmdet ResNet with LESA blocks (``DET:mmdet/models/backbones/resnet.py``,
``LESA.py``; the classification repository uses the same module names) to :class:`lsvr_lesa.backbone.LESAResNet`.

Reference names -> lsvr names (every BatchNorm brings weight, bias, running_mean, running_var,
num_batches_tracked):

=========================================== =================================
``conv1``, ``bn1``                          ``stem.0``, ``stem.1``
``layer{s}.{b}.conv1/bn1/conv3/bn3``        ``stages.{s-1}.{b}.`` same
``layer{s}.{b}.conv2`` (conv / DCN) + bn2   ``stages.{s-1}.{b}.conv2`` + bn2
``layer{s}.{b}.downsample.{0,1}``           ``stages.{s-1}.{b}.downsample.{0,1}``
LESA ``conv2.x_transform.0`` (conv / DCN)   ``conv2.unary.conv``
LESA ``conv2.x_transform.1``, ``bn_x``      ``conv2.unary.mix``, ``conv2.unary.bn``
LESA ``conv2.qkv_transform``, ``bn_qkv``    ``conv2.binary.qkv``, ``conv2.binary.bn_qkv``
LESA ``conv2.bn_similarity``, ``bn_output`` ``conv2.binary.`` same (see the BN-shape mapping)
LESA ``conv2.rel_height``, ``rel_width``    ``conv2.binary.rel_h``, ``conv2.binary.rel_w``
LESA ``conv2.reasoning.{1,2}``              ``conv2.fusion.conv1``, ``conv2.fusion.bn1``
LESA ``conv2.projection.{0,1}``             ``conv2.fusion.conv2``, ``conv2.fusion.bn2``
=========================================== =================================

BN-shape mapping (LESA spec §3.6). A ``pe_type='classification'`` checkpoint has ``bn_similarity`` over 3G
logit channels ordered [q.k, q.r_q, k.r_k] (``LESA.py``: ``cat([qk, qr, kr])``) and ``bn_output`` over 2C
channels interleaved as (2 c + 0: attention-weighted values, 2 c + 1: attention-weighted value embeddings).
Detection (``detection_qr``) has [q.k, q.r] (2G) and C. Our choice: keep the channels of the terms both
variants share: ``bn_similarity`` <- channels [0, 2G) (content q.k and the query-side position logit, the
detection q.r's counterpart), ``bn_output`` <- the even channels (the P V term). The dropped channels (k.r_k,
the value-embedding term) have no counterpart in detection. The query-side position statistics come from the
classification model's 1-D flattened positional scheme, so they only approximate what detection's 2-D tables
produce; the reference re-initialises those tables anyway (and so do we: ``relative``, ``flatten_index``,
``rel_height``, ``rel_width`` and ``fc.*`` are dropped from ImageNet checkpoints, as its ``init_weights`` does).
A checkpoint that already has detection shapes (2G, C) is copied unchanged.
"""

from __future__ import annotations

import re

from torch import Tensor

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_LESA = {
    "x_transform.0.weight": "unary.conv.weight",
    "x_transform.0.conv_offset.weight": "unary.conv.conv_offset.weight",
    "x_transform.0.conv_offset.bias": "unary.conv.conv_offset.bias",
    "x_transform.1.weight": "unary.mix.weight",
    "qkv_transform.weight": "binary.qkv.weight",
    "rel_height": "binary.rel_h",
    "rel_width": "binary.rel_w",
    "reasoning.1.weight": "fusion.conv1.weight",
    "projection.0.weight": "fusion.conv2.weight",
    **{f"bn_x.{p}": f"unary.bn.{p}" for p in _BN},
    **{f"bn_qkv.{p}": f"binary.bn_qkv.{p}" for p in _BN},
    **{f"bn_similarity.{p}": f"binary.bn_similarity.{p}" for p in _BN},
    **{f"bn_output.{p}": f"binary.bn_output.{p}" for p in _BN},
    **{f"reasoning.2.{p}": f"fusion.bn1.{p}" for p in _BN},
    **{f"projection.1.{p}": f"fusion.bn2.{p}" for p in _BN},
}
_IMAGENET_DROPPED = re.compile(r"(^fc\.|\.relative$|\.flatten_index$|\.rel_height$|\.rel_width$)")
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(.+)$")
_PLAIN = re.compile(r"^(conv1|bn1|conv2|bn2|conv3|bn3|downsample\.[01])\.(.+)$")


def _map_key(key: str) -> str | None:
    """The lsvr name of one reference backbone key (without prefixes), or None if it has none."""
    if key == "conv1.weight":
        return "stem.0.weight"
    if key.startswith("bn1.") and key[4:] in _BN:
        return f"stem.1.{key[4:]}"
    match = _BLOCK.match(key)
    if match is None:
        return None
    stage, block, rest = int(match.group(1)) - 1, match.group(2), match.group(3)
    prefix = f"stages.{stage}.{block}."
    if rest.startswith("conv2.") and rest[6:] in _LESA:
        return prefix + "conv2." + _LESA[rest[6:]]
    if rest in ("conv2.conv_offset.weight", "conv2.conv_offset.bias"):
        return prefix + rest
    if _PLAIN.match(rest):
        return prefix + rest
    return None


def map_lesa_bn_shapes(state: dict[str, Tensor], misshaped: list[str]) -> dict[str, Tensor]:
    """Apply the BN-shape mapping (module docstring) to reference-named LESA BNs.

    The block's channels C come from ``qkv_transform.weight`` (2C, C, 1) and its heads G from the grouped unary
    conv ``x_transform.0.weight`` (C, C / G, 3, 3).

    Args:
        state: reference-named tensors (any prefix).
        misshaped: receives ``"key (shape, expected ...)"`` for BNs matching neither variant.
    Returns:
        a copy of ``state`` with classification-shaped BNs cut to detection shapes.
    """
    out = dict(state)
    for key in [k for k in state if k.endswith("qkv_transform.weight")]:
        base = key[: -len("qkv_transform.weight")]
        channels = int(state[key].shape[1])
        unary = state.get(base + "x_transform.0.weight")
        heads = channels // int(unary.shape[1]) if unary is not None else None
        for p in _BN[:4]:
            k = base + f"bn_similarity.{p}"
            if k in state and heads is not None and state[k].shape[0] == 3 * heads:
                out[k] = state[k][: 2 * heads].clone()  # [q.k, q.r_q] of [q.k, q.r_q, k.r_k]
            elif k in state and (heads is None or state[k].shape[0] != 2 * heads):
                misshaped.append(f"{k} {tuple(state[k].shape)} (expected 2G or 3G channels, G={heads})")
            k = base + f"bn_output.{p}"
            if k in state and state[k].shape[0] == 2 * channels:
                out[k] = state[k][0::2].clone()  # the P V term of the interleaved (P V, P r_v) pairs
            elif k in state and state[k].shape[0] != channels:
                misshaped.append(f"{k} {tuple(state[k].shape)} (expected C={channels} or 2C={2 * channels})")
    return out


def convert_backbone(state: dict[str, Tensor], imagenet: bool) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Map reference backbone keys (no ``backbone.`` prefix) to :class:`~lsvr_lesa.backbone.LESAResNet` keys.

    Args:
        state: the reference tensors.
        imagenet: drop what the reference's loader drops from ImageNet checkpoints (``fc.*``, positional
            tables and indices) and apply the BN-shape mapping.
    Returns:
        (converted, unmapped keys, mis-shaped keys).
    """
    unmapped: list[str] = []
    misshaped: list[str] = []
    if imagenet:
        state = {k: v for k, v in state.items() if not _IMAGENET_DROPPED.search(k)}
        state = map_lesa_bn_shapes(state, misshaped)
    out = {}
    for key, value in state.items():
        new = _map_key(key)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    return out, unmapped, misshaped
