"""``lsvr convert-weights mutualguide-v1``: the released MutualGuide v1 checkpoints as lsvr weights.

The source is the state dict of the reference's ``Detector`` at a6fd618 (the commit whose README links the
released VOC / COCO models; spec §0), or of the first commit's RFBNet (``a24bbe4:models/rfbnet.py``). Its
names are ``backbone.*`` (VGG16-BN ``layer1``/``layer2``, ResNet, ShuffleNetV2 or RepVGG), ``neck.*`` (``ssd``,
``fpn``, ``pafpn``; RFBNet's ``reduce``/``up_reduce``/``Norm``/``extras`` sit at the top level) and the head's
``loc.{k}`` / ``conf.{k}`` convs. The mapping is a renaming, plus one change of values: the reference feeds BGR
images and lsvr RGB ones (both subtract the same per-channel means, §5), so the input-channel axis of the
first conv is reversed, which makes the converted model on an RGB image equal the reference on the BGR one.

The conversion is all-or-nothing: every key must map, and the head and first-conv shapes must be those of a
v1 model; otherwise :class:`~lsvr_core.api.ConversionError` lists every offending key. Checkpoints of later
commits (a192256's conv-tower head with ``dist`` layers, v2) are rejected that way.
"""

from __future__ import annotations

import re

from torch import Tensor

from lsvr_core.api import ConversionError

# BasicConv of a6fd618 (module with .conv/.bn) -> lsvr's Sequential BasicConv (0: conv, 1: bn)
_BASIC_CONV = {"conv.weight": "0.weight", "conv.bias": "0.bias", "bn.weight": "1.weight", "bn.bias": "1.bias",
               "bn.running_mean": "1.running_mean", "bn.running_var": "1.running_var",
               "bn.num_batches_tracked": "1.num_batches_tracked"}

_BACKBONES: dict[str, list[tuple[str, str]]] = {  # family -> [(reference prefix, lsvr prefix)]
    "resnet": [("conv1.", "stem.0."), ("bn1.", "stem.1."), ("layer1.", "stem.3."), ("layer2.", "stem.4."),
               ("layer3.", "stage3."), ("layer4.", "stage4.")],
    "shufflenet": [("conv1.", "stem.0."), ("stage2.", "stem.1."), ("stage3.", "stage3."), ("stage4.", "stage4.")],
    "repvgg": [(f"stage{i}.", f"stage{i}.") for i in range(5)],
    "vgg": [],  # index arithmetic, see _vgg_key
}
_FIRST_CONVS = {"resnet": ["conv1.weight"], "shufflenet": ["conv1.0.weight"], "vgg": ["layer1.0.weight"],
                "repvgg": ["stage0.rbr_dense.conv.weight", "stage0.rbr_1x1.conv.weight", "stage0.rbr_reparam.weight"]}
_VGG_SPLIT = 33  # the reference's layer2 is features[33:43]; lsvr keeps torchvision's indices

# neck -> [(reference module regex, lsvr module template)]; {i} is the captured index, {j} the index minus 1
_NECKS: dict[str, list[tuple[str, str]]] = {
    "ssd": [(r"ft_module\.0", "reduce_fine"), (r"ft_module\.1", "reduce_coarse"), (r"pyramid_ext\.0", "fuse"),
            (r"pyramid_ext\.(?P<i>\d+)", "downs.{j}")],
    "fpn": [(r"lateral_convs\.(?P<i>\d+)", "laterals.{i}"), (r"fpn_convs\.(?P<i>\d+)", "smooth.{i}")],
    "pafpn": [(r"ft_module\.cv1", "reduce_fine"), (r"ft_module\.cv2", "reduce_coarse"),
              (r"ft_module\.cv3", "reduce_global"), (r"downsample_convs\.(?P<i>\d+)", "bottom_up.{i}"),
              (r"pafpn_convs\.(?P<i>\d+)", "final.{i}")],
}
_NECKS["fpn"] = _NECKS["ssd"] + _NECKS["fpn"]
_NECKS["pafpn"] = _NECKS["pafpn"] + [m for m in _NECKS["fpn"] if not m[0].startswith("ft_module")]
_RFB_TOP = ("reduce.", "up_reduce.", "Norm.", "extras.")


def _family(state: dict[str, Tensor]) -> str | None:
    if any(k.startswith("backbone.stage0.") for k in state):
        return "repvgg"
    if "backbone.conv1.0.weight" in state:
        return "shufflenet"
    if "backbone.conv1.weight" in state:
        return "resnet"
    if "backbone.layer1.0.weight" in state:
        return "vgg"
    return None


def _neck(state: dict[str, Tensor]) -> str | None:
    if "neck.ft_module.cv1.conv.weight" in state:
        return "pafpn"
    if "neck.lateral_convs.0.conv.weight" in state:
        return "fpn"
    if "neck.ft_module.0.conv.weight" in state:
        return "ssd"
    if "Norm.conv_linear.conv.weight" in state or "Norm.ConvLinear.conv.weight" in state:
        return "rfb"
    return None


def _vgg_key(rest: str) -> str | None:
    m = re.fullmatch(r"layer([12])\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)", rest)
    if m is None:
        return None
    index = int(m[2]) + (_VGG_SPLIT if m[1] == "2" else 0)
    return f"stage{3 if m[1] == '1' else 4}.{index}.{m[3]}"


def _backbone_key(rest: str, family: str) -> str | None:
    if family == "vgg":
        return _vgg_key(rest)
    for old, new in _BACKBONES[family]:
        if rest.startswith(old):
            return new + rest[len(old):]
    return None


def _neck_key(rest: str, neck: str) -> str | None:
    for pattern, template in _NECKS[neck]:
        m = re.fullmatch(pattern + r"\.(?P<param>.+)", rest)
        if m is None or m["param"] not in _BASIC_CONV:
            continue
        i = int(m.groupdict().get("i") or 0)
        return f"{template.format(i=i, j=i - 1)}.{_BASIC_CONV[m['param']]}"
    return None


def _map(key: str, family: str | None, neck: str | None) -> str | None:
    if m := re.fullmatch(r"(loc|conf)\.(\d+)\.(weight|bias)", key):
        return f"head.{m[1]}.{m[2]}.{m[3]}"
    if key.startswith("backbone.") and family is not None:
        new = _backbone_key(key[len("backbone."):], family)
        return None if new is None else "backbone." + new
    if key.startswith("neck.") and neck in _NECKS:
        new = _neck_key(key[len("neck."):], neck)
        return None if new is None else "neck." + new
    if neck == "rfb" and key.startswith(_RFB_TOP):
        new = key.replace("Norm.", "norm.", 1).replace("ConvLinear.", "conv_linear.")
        return "neck." + new
    return None


def _shape_errors(state: dict[str, Tensor], family: str | None) -> list[str]:
    """Head convs must be 6 anchors x 4 offsets / x C classes over the same C; the first conv must read 3 channels."""
    errors = []
    classes = set()
    for key, value in state.items():
        if m := re.fullmatch(r"(loc|conf)\.\d+\.weight", key):
            if value.ndim != 4 or (m[1] == "loc" and value.shape[0] != 24) or value.shape[0] % 6:
                errors.append(f"{key} {tuple(value.shape)}")
            elif m[1] == "conf":
                classes.add(value.shape[0] // 6)
    if len(classes) > 1:
        errors.append(f"conf.*.weight disagree on the class count: {sorted(classes)}")
    for name in _FIRST_CONVS.get(family or "", []):
        value = state.get("backbone." + name)
        if value is not None and (value.ndim != 4 or value.shape[1] != 3):
            errors.append(f"backbone.{name} {tuple(value.shape)} (expected 3 input channels)")
    return errors


def convert_mutualguide_v1(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a MutualGuide v1 state dict (a6fd618 ``Detector`` or a24bbe4 RFBNet) to lsvr names.

    Args:
        state: reference parameter and buffer names -> tensors (a ``module.`` prefix already stripped).
    Returns:
        lsvr names (``backbone.*``, ``neck.*``, ``head.loc.{k}``, ``head.conf.{k}``) -> tensors, the first
        conv's input channels reversed (BGR -> RGB); every other tensor is the same object.
    Raises:
        ConversionError: lists every key that does not map and every mis-shaped head / first-conv tensor.
    """
    family, neck = _family(state), _neck(state)
    out: dict[str, Tensor] = {}
    unmapped = []
    for key, value in state.items():
        new = _map(key, family, neck)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    problems = []
    if unmapped:
        what = f"backbone {family or 'not recognised'}, neck {neck or 'not recognised'}"
        problems.append(f"{len(unmapped)} unmapped keys ({what}): {', '.join(unmapped)}")
    bad_shapes = _shape_errors(state, family)
    if bad_shapes:
        problems.append(f"mis-shaped: {', '.join(bad_shapes)}")
    if problems:
        raise ConversionError("mutualguide-v1: " + "; ".join(problems))
    for name in _FIRST_CONVS.get(family or "", []):
        new = f"backbone.{_backbone_key(name, family)}"  # type: ignore[arg-type]
        if new in out:
            out[new] = out[new].flip(1)
    return out


def convert_mutualguide_v2(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a MutualGuide v2 (HEAD) CSPDarknet + PAFPN state dict to lsvr names (``cspdarknet``, ``pafpn_v2``,
    ``mutual_guide`` head with ``tower: true``).

    ``backbone.*`` and ``neck.*`` keep their names except the context module's ``conv2.0`` / ``conv3.1``
    (Sequentials with an upsample / a pooling) -> ``conv2`` / ``conv3``; ``loc.*`` / ``conf.*`` go under
    ``head.``. The distillation branch ``dist.*`` (present in every HEAD checkpoint, used only by PDF-Distil
    training, never by the detector) is left out; it is the only thing dropped.
    The reference feeds RGB images (``HEAD:data/data_augment.py``), so no channel is reversed.

    Raises:
        ConversionError: lists every other key that does not map.
    """
    out: dict[str, Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if key.startswith("dist."):
            continue
        if re.fullmatch(r"(loc|conf)\.\d+\.(0\.(conv\.weight|bn\.\w+)|1\.(weight|bias))", key):
            out["head." + key] = value
        elif key.startswith("backbone."):
            out[key] = value
        elif key.startswith("neck."):
            out[key.replace("ft_module.conv2.0.", "ft_module.conv2.").replace("ft_module.conv3.1.",
                                                                                "ft_module.conv3.")] = value
        else:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(f"mutualguide-v2: {len(unmapped)} unmapped keys: {', '.join(unmapped)}")
    return out
