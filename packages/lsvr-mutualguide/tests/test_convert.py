"""``lsvr convert-weights mutualguide-v1``: state dicts with the reference's names and shapes (recorded from the
reference modules in ``data/mutualguide_v1_state_dicts.txt.gz``) convert, load strictly into the equivalent lsvr
model, and give the outputs of an independent forward pass that reads the reference-named tensors directly
(torchvision's VGG16-BN for the backbone, functional convs for the neck and head, on the BGR image)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lsvr_core.api import ConversionError
from lsvr_core.models.detector import Detector
from lsvr_core.structures import Batch, Targets
from lsvr_mutualguide import config as c
from lsvr_mutualguide.backbones import build_resnet_mg, build_shufflenet_v2, build_vgg16_bn
from lsvr_mutualguide.convert import convert_mutualguide_v1
from lsvr_mutualguide.head import MutualGuideHead
from lsvr_mutualguide.necks import build_fpn_mg, build_pafpn, build_ssd
from lsvr_mutualguide.repvgg import build_repvgg_a2
from lsvr_mutualguide.rfb import build_rfb

torch.set_num_threads(1)
FACTS = Path(__file__).parent / "data" / "mutualguide_v1_state_dicts.txt.gz"


def reference_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    cases: dict[str, dict[str, tuple[int, ...]]] = {}
    current: dict[str, tuple[int, ...]] = {}
    for line in gzip.decompress(FACTS.read_bytes()).decode().splitlines():
        if line.startswith("# ") and " " not in line[2:]:
            current = cases.setdefault(line[2:], {})
        elif not line.startswith("#"):
            name, shape = line.split(" ")
            current[name] = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
    return cases


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) + 0.5
        else:
            out[name] = torch.randn(shape, generator=g) * 0.05
    return out


BACKBONES = {"vgg16": lambda: build_vgg16_bn(c.VGG16BNConfig()),
             "resnet18": lambda: build_resnet_mg(c.ResNetMGConfig()),
             "shufflenet": lambda: build_shufflenet_v2(c.ShuffleNetV2Config()),
             "repvgg": lambda: build_repvgg_a2(c.RepVGGConfig())}
NECKS = {"fpn": lambda w, n: (build_fpn_mg, c.FPNMGNeckConfig(out_channels=w, num_levels=n)),
         "ssd": lambda w, n: (build_ssd, c.SSDNeckConfig(out_channels=w, num_levels=n)),
         "pafpn": lambda w, n: (build_pafpn, c.PAFPNNeckConfig(out_channels=w, num_levels=n)),
         "rfb": lambda w, n: (build_rfb, c.RFBNeckConfig(num_levels=n))}


def lsvr_model(case: str) -> Detector:
    """The lsvr model of a reference case name ``<backbone>_<neck>_<size>_<voc|coco>``."""
    backbone_name, neck_name, size, data = case.split("_")
    backbone = BACKBONES[backbone_name]()
    factory, cfg = NECKS[neck_name](128 if backbone_name == "shufflenet" else 256, 4 if int(size) < 512 else 5)
    neck = factory(cfg, backbone.output_shape())
    head = MutualGuideHead(neck.output_shape(), 20 if data == "voc" else 80, None, None, None)
    return Detector(backbone, neck, head, (123.0, 117.0, 104.0), (1.0, 1.0, 1.0))


def check_case(case: str, shapes: dict[str, tuple[int, ...]]) -> None:
    state = random_state(shapes)
    converted = convert_mutualguide_v1(state)
    model = lsvr_model(case)
    model.load_state_dict(converted, strict=True)  # every name and shape matches, nothing left over
    assert len(converted) == len(state)
    flipped = [k for k, v in converted.items() if not any(v is s for s in state.values())]
    assert len(flipped) in (1, 2), flipped  # only the first conv(s) change (RepVGG stage0: 3x3 and 1x1 branch)


def test_convert_resnet18_fpn_loads_strictly() -> None:
    check_case("resnet18_fpn_320_voc", reference_shapes()["resnet18_fpn_320_voc"])


@pytest.mark.slow
def test_convert_every_recorded_reference_model() -> None:
    cases = reference_shapes()
    assert len(cases) == 8
    for case, shapes in cases.items():
        check_case(case, shapes)


def _basic(x: torch.Tensor, s: dict[str, torch.Tensor], p: str, stride: int = 1) -> torch.Tensor:
    """The reference BasicConv read from its names: conv (bias) -> BN (eval, eps 1e-5) -> ReLU."""
    w = s[p + ".conv.weight"]
    x = F.conv2d(x, w, s[p + ".conv.bias"], stride, w.shape[-1] // 2)
    x = F.batch_norm(x, s[p + ".bn.running_mean"], s[p + ".bn.running_var"], s[p + ".bn.weight"], s[p + ".bn.bias"],
                     False, 0.0, 1e-5)
    return F.relu(x)


def reference_forward(state: dict[str, torch.Tensor], bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VGG16 + fpn + head of spec §2 on a BGR mean-subtracted image, reading the reference's names directly."""
    vgg = torchvision.models.vgg16_bn(weights=None).features.eval()
    vgg.load_state_dict({f"{int(k.split('.')[2]) + (33 if k.split('.')[1] == 'layer2' else 0)}.{k.split('.', 3)[3]}": v
                         for k, v in state.items() if k.startswith("backbone.")})
    c3 = vgg[:33](bgr)
    c4 = vgg[33:43](c3)
    s = {k[len("neck."):]: v for k, v in state.items() if k.startswith("neck.")}
    x = _basic(c3, s, "ft_module.0")
    up = F.interpolate(_basic(c4, s, "ft_module.1"), scale_factor=2, mode="nearest")
    maps = [_basic(torch.cat([x, up], 1), s, "pyramid_ext.0")]
    for k in range(1, 4):
        maps.append(_basic(maps[-1], s, f"pyramid_ext.{k}", stride=2))
    lat = [_basic(m, s, f"lateral_convs.{k}") for k, m in enumerate(maps)]
    for k in range(3, 0, -1):
        lat[k - 1] = lat[k - 1] + F.interpolate(lat[k], size=lat[k - 1].shape[-2:], mode="nearest")
    maps = [_basic(m, s, f"fpn_convs.{k}") for k, m in enumerate(lat)]
    locs, confs = [], []
    for k, m in enumerate(maps):
        loc = F.conv2d(m, state[f"loc.{k}.weight"], state[f"loc.{k}.bias"], padding=1)
        conf = F.conv2d(m, state[f"conf.{k}.weight"], state[f"conf.{k}.bias"], padding=1)
        locs.append(loc.permute(0, 2, 3, 1).reshape(1, -1, 4))
        confs.append(conf.permute(0, 2, 3, 1).reshape(1, -1, 20))
    return torch.cat(locs, 1), torch.cat(confs, 1)


@pytest.mark.slow
def test_converted_vgg16_fpn_equals_the_reference_forward_on_bgr() -> None:
    state = random_state(reference_shapes()["vgg16_fpn_320_voc"], seed=1)
    model = lsvr_model("vgg16_fpn_320_voc").eval()
    model.load_state_dict(convert_mutualguide_v1(state), strict=True)
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        batch = Batch(rgb, [Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0, (64, 64), (64, 64))])
        loc, conf, _ = model.head.outputs(model.features(batch))
        bgr = rgb.flip(1) - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
        ref_loc, ref_conf = reference_forward(state, bgr)
    assert loc.shape == ref_loc.shape == (1, 6 * (64 + 16 + 4 + 1), 4)
    torch.testing.assert_close(loc, ref_loc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conf, ref_conf, rtol=1e-4, atol=1e-4)


def test_unmapped_and_mis_shaped_keys_are_all_listed() -> None:
    """A later checkpoint layout (a192256: conv-tower head, ``dist`` layers) fails with every offending key."""
    state = random_state(reference_shapes()["resnet18_fpn_320_voc"])
    extra = {"dist.0.weight": torch.zeros(256, 256, 3, 3), "loc.0.0.conv.weight": torch.zeros(256, 256, 3, 3),
             "neck.ft_module.0.conv.scale": torch.zeros(1)}
    state.update(extra)
    state["conf.1.weight"] = torch.zeros(6 * 21, 256, 3, 3)
    with pytest.raises(ConversionError) as err:
        convert_mutualguide_v1(state)
    message = str(err.value)
    assert "3 unmapped keys" in message and all(k in message for k in extra)
    assert "conf.*.weight disagree on the class count: [20, 21]" in message


def test_cli_lists_the_format_and_converts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lsvr_core.cli.main import main

    with pytest.raises(SystemExit):
        main(["convert-weights", "--help"])
    assert "mutualguide-v1" in capsys.readouterr().out
    src, dst = tmp_path / "ref.pth", tmp_path / "lsvr.pt"
    shapes = reference_shapes()["resnet18_fpn_320_voc"]
    torch.save(random_state(shapes), src)
    assert main(["convert-weights", "mutualguide-v1", str(src), str(dst)]) == 0
    written = torch.load(dst, weights_only=True)["model"]
    assert "backbone.stem.0.weight" in written and "head.conf.3.bias" in written
