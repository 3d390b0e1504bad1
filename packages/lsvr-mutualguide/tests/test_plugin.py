"""Registration is torch-free and lists every component and recipe."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_import_does_not_import_torch() -> None:
    code = ("import sys, lsvr_mutualguide.plugin as p; p.lsvr_heads(); p.lsvr_recipes(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_registered_names() -> None:
    from lsvr_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    names = {(s.kind, s.name) for s in pm.components() if s.distribution == "lsvr-mutualguide"}
    assert names == {
        ("backbone", "vgg16_bn"), ("backbone", "resnet_mg"), ("backbone", "shufflenet_v2"), ("backbone", "repvgg_a2"),
        ("neck", "ssd"), ("neck", "fpn_mg"), ("neck", "pafpn"), ("neck", "rfb"), ("neck", "pafpn_v2"),
        ("backbone", "cspdarknet"), ("head", "mutual_guide"),
        ("assigner", "mutual_guide"), ("assigner", "iou"),
        ("loss", "balanced_l1"), ("loss", "varifocal_poly"), ("loss", "siou"),
    }
