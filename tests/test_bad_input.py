"""Bad input through the CLI, one row per case of issue 14 (findings 1-9): exit code, the one-line message,
no traceback, and nothing in an existing run's work dir changed.

Every case runs ``lsvr_core.cli.main.main`` in-process on the engine tests' tiny plugin (a model that trains
in milliseconds) or on ``lsnet:demo`` for config-only cases. A module fixture makes one finished run in
``runs/exp`` first; every case's config points ``runtime.work_dir`` there, so a case that starts a run must
leave ``runs/exp`` byte for byte as it was (a new run goes to ``runs/exp2``, removed after the case).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

CORE_TESTS = Path(__file__).resolve().parents[1] / "packages" / "lsvr-core" / "tests"
_spec = importlib.util.spec_from_file_location("engine_common", CORE_TESTS / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

GOOD = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10], "area": 200, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 8, 30, 30], "area": 900, "iscrowd": 0}]
BAD = {"strings": {"id": 11, "image_id": 1, "category_id": 1, "bbox": ["a", "b", "c", "d"]},
       "null": {"id": 12, "image_id": 1, "category_id": 1, "bbox": None},
       "noimg": {"id": 14, "category_id": 1, "bbox": [1, 1, 10, 10]},
       "degenerate": {"id": 15, "image_id": 2, "category_id": 1, "bbox": [5, 5, 0.5, 20]}}


def cli(argv: list[str]) -> int:
    from lsvr_core.cli.main import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's --help
        return int(stop.code or 0)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _coco(root: Path) -> None:
    from lsvr_core.visualize import save_png

    images = []
    for i in (1, 2):
        save_png(torch.full((3, 48, 64), 60 * i, dtype=torch.uint8), root / "img" / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"{i:03d}.png", "height": 48, "width": 64})
    cats = [{"id": 1, "name": "box"}, {"id": 3, "name": "disc"}]
    for name, anns in [("good", GOOD), ("all_bad", [BAD["degenerate"]])] + [(k, GOOD + [v]) for k, v in BAD.items()]:
        (root / f"{name}.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def _voc(root: Path) -> None:
    from lsvr_core.visualize import save_png

    base = root / "VOCdevkit" / "VOC2012"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "train.txt").write_text("x1\n")
    save_png(torch.zeros((3, 48, 64), dtype=torch.uint8), base / "JPEGImages" / "x1.jpg")  # PNG bytes decode too
    (base / "Annotations" / "x1.xml").write_text(
        "<annotation><size><width>64</width><height>48</height></size><object><name>cat</name>"
        "<difficult>Unspecified</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax>"
        "</bndbox></object></annotation>")


PLUGIN_HEAD = """
from typing import Literal
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import BackboneConfig, ComponentSpec, HeadConfig
"""


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad")
    existing = tmp / "runs" / "exp"
    base = common.config_dict(existing, schedule={"epochs": 1}, eval={"num_draw": 1})
    tiny = common.write_yaml(tmp / "tiny.yaml", base)
    assert cli(["--plugin", common.PLUGIN, "run", tiny]) == 0
    last = existing / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    other = dict(ckpt, model={**{k: v for k, v in ckpt["model"].items() if k != "head.fc.bias"},
                              "neck.extra.weight": torch.zeros(2)})
    torch.save(other, tmp / "other.pt")
    torch.save({"model": {f"module.{k}": v for k, v in ckpt["model"].items()}}, tmp / "renamed.pt")
    torch.save(torch.zeros(3), tmp / "tensor.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    torch.save({k: v for k, v in ckpt.items() if k != "rng"}, tmp / "norng.pt")
    torch.save({"model": ckpt["model"]}, tmp / "weights.pt")
    (tmp / "afile").write_text("not a folder")
    _coco(tmp / "coco")
    _voc(tmp / "voc")
    coco_train = {"type": "coco", "root": str(tmp / "coco"), "ann_file": "good.json", "img_dir": "img"}
    coco = common.merge(base, {"data": {"val": None, "batch_size": 2}, "eval": {"evaluator": None}})
    coco["data"]["train"] = coco_train
    common.write_yaml(tmp / "coco.yaml", coco)
    voc_train = {"type": "voc", "root": str(tmp / "voc" / "VOCdevkit"), "sets": [["2012", "train"]],
                 "on_bad_annotation": "error"}
    voc = common.merge(base, {"data": {"val": None}, "eval": {"evaluator": None}, "model": {"num_classes": 20}})
    voc["data"]["train"] = voc_train
    common.write_yaml(tmp / "voc.yaml", voc)
    (tmp / "exiting.py").write_text("import sys\nsys.exit('plugin exiting.py gives up')\n")
    (tmp / "dup.py").write_text(PLUGIN_HEAD + (
        "class C(BackboneConfig):\n    type: Literal['tiny_conv'] = 'tiny_conv'\n"
        "@hookimpl\ndef lsvr_backbones():\n    return [ComponentSpec('backbone', 'tiny_conv', C, 'x:y', 'dup')]\n"))
    (tmp / "ghost.py").write_text(PLUGIN_HEAD + (
        "class G(HeadConfig):\n    type: Literal['ghost_head'] = 'ghost_head'\n"
        "@hookimpl\ndef lsvr_heads():\n"
        "    return [ComponentSpec('head', 'ghost_head', G, 'lsvr_no_such_module.heads:build', 'ghost')]\n"))
    common.write_yaml(tmp / "ghost.yaml", common.merge(base, {"model": {"head": {"type": "ghost_head"}}}))
    return {"tmp": tmp, "existing": existing, "tiny": tiny, "plugin": common.PLUGIN,
            "snapshot": snapshot(existing)}  # type: ignore[dict-item]


P = ["--plugin", "{plugin}"]
RUN = [*P, "run", "{tiny}"]
CASES = [
    # finding 1: a second run never overwrites the first
    ("second-run", RUN, 0, r"runs/exp already holds a run: this run writes to .*runs/exp2"),
    # finding 2: a corrupt val image: exit 2 naming the file; the epoch's checkpoint was written first
    ("corrupt-val", [*RUN, "-o", "data.val.corrupt=[2]"], 2,
     r"lsvr: error: image shapes/002.png \(image id 3\): cannot decode .*; set data.on_corrupt: skip"),
    # finding 5: init_from that loads nothing
    ("init-from-nothing", [*RUN, "-o", "model.init_from={tmp}/renamed.pt"], 2,
     r"model.init_from .*renamed.pt: loaded 0 of 6 tensors \(0.0 % of the model's values\); 6 missing, 6 "
     r"unexpected.*model.init_from_strict: false"),
    ("init-from-not-strict", [*RUN, "-o", "model.init_from={tmp}/renamed.pt", "-o", "model.init_from_strict=false"],
     0, r"only 0.0 % of the model's values loaded"),
    # finding 6: plugins that exit at import, duplicate names
    ("plugin-sys-exit-listed", [*P, "--plugin", "{tmp}/exiting.py", "plugins"], 0,
     r"exiting +failed .*\n +error: SystemExit: plugin exiting.py gives up"),
    ("plugin-sys-exit-run", [*P, "--plugin", "{tmp}/exiting.py", "run", "{tiny}"], 2,
     r"some plugins failed to load.*LSVR_DISABLE_PLUGINS=exiting"),
    ("duplicate-listed", [*P, "--plugin", "{tmp}/dup.py", "plugins"], 0,
     r"backbone 'tiny_conv' is registered twice: by \(file\) \(plugin 'tiny_plugin'\) and by \(file\) "
     r"\(plugin 'dup'\)"),
    ("duplicate-help", [*P, "--plugin", "{tmp}/dup.py", "--help"], 0, r"usage: lsvr"),
    ("duplicate-run", [*P, "--plugin", "{tmp}/dup.py", "run", "{tiny}"], 2, r"registered twice"),
    # finding 7: one line where a traceback was
    ("empty-after-filtering", [*P, "run", "{tmp}/coco.yaml", "-o", "data.train.ann_file=all_bad.json"], 2,
     r"data.train \(coco\): the dataset is empty after loading and filtering"),
    ("bbox-strings", [*P, "run", "{tmp}/coco.yaml", "-o", "data.train.ann_file=strings.json", "-o",
                      "data.train.on_bad_annotation=error"], 2,
     r"strings.json: annotation 11: bbox \['a', 'b', 'c', 'd'\] is not a list of 4 numbers"),
    ("bbox-null", [*P, "run", "{tmp}/coco.yaml", "-o", "data.train.ann_file=null.json", "-o",
                   "data.train.on_bad_annotation=error"], 2, r"null.json: annotation 12: bbox None is not a list"),
    ("no-image-id", [*P, "run", "{tmp}/coco.yaml", "-o", "data.train.ann_file=noimg.json", "-o",
                     "data.train.on_bad_annotation=error"], 2,
     r"noimg.json: annotation 14: has no integer image_id \(got None\)"),
    ("voc-difficult", [*P, "run", "{tmp}/voc.yaml"], 2,
     r"x1.xml: annotation 1 \(object #0\): <difficult>Unspecified</difficult> is not 0 or 1"),
    ("resume-other-model", [*RUN, "--resume", "{tmp}/other.pt"], 2,
     r"other.pt: was saved from a different model than this config builds: 1 missing \(head.fc.bias\); "
     r"1 unexpected \(neck.extra.weight\) keys"),
    ("resume-tensor", [*RUN, "--resume", "{tmp}/tensor.pt"], 2, r"tensor.pt: not an lsvr checkpoint \(it holds a "
     r"Tensor\)"),
    ("resume-list", [*RUN, "--resume", "{tmp}/list.pt"], 2, r"list.pt: not an lsvr checkpoint \(it holds a list\)"),
    ("resume-no-rng", [*RUN, "--resume", "{tmp}/norng.pt"], 2, r"norng.pt: not a complete lsvr checkpoint \(no rng\)"),
    ("resume-weights-only", [*RUN, "--resume", "{tmp}/weights.pt"], 2, r"weights.pt: holds weights only"),
    ("work-dir-is-a-file", [*RUN, "-o", "runtime.work_dir={tmp}/afile"], 2,
     r"runtime.work_dir='.*afile' is a file, not a folder"),
    ("work-dir-not-writable", [*RUN, "-o", "runtime.work_dir=/sys/lsvr_i14/run"], 2,
     r"runtime.work_dir='/sys/lsvr_i14/run': cannot write /sys/lsvr_i14: Operation not permitted"),
    ("device-tpu9", [*RUN, "-o", "runtime.device=tpu9"], 2, r"runtime.device: String should match pattern .*'tpu9'"),
    ("factory-missing-validate", [*P, "--plugin", "{tmp}/ghost.py", "validate", "{tmp}/ghost.yaml"], 2,
     r"model.head: head 'ghost_head' of plugin 'ghost' \(\(file\)\): its factory module "
     r"'lsvr_no_such_module.heads' .* cannot be found"),
    ("factory-missing-run", [*P, "--plugin", "{tmp}/ghost.py", "run", "{tmp}/ghost.yaml"], 2,
     r"head 'ghost_head' of plugin 'ghost' \(\(file\)\): cannot import its factory "
     r"'lsvr_no_such_module.heads:build': ModuleNotFoundError"),
    # finding 8: config corners and bounds
    ("override-defaulted-component", ["validate", "lsnet:demo", "-o", "model.head.loss_cls.gamma=1.5"], 0,
     r"lsnet:demo: ok"),
    ("batch-size-huge", [*RUN, "-o", "data.batch_size=1000000000"], 2,
     r"data.batch_size: Input should be less than or equal to 4096 \(got 1000000000\)"),
    ("batch-larger-than-set", [*RUN, "-o", "data.batch_size=17"], 2,
     r"data.batch_size=17 is larger than the 16 training images"),
    ("num-workers", [*RUN, "-o", "data.num_workers=100000"], 2, r"data.num_workers: Input should be less than or "
     r"equal to 256"),
    ("threads", [*RUN, "-o", "runtime.threads=100000"], 2, r"runtime.threads: Input should be less than or equal"),
    ("scale", ["validate", "lsnet:demo", "-o", "data.train.pipeline.scale=[100000,100000]"], 2,
     r"data.train.pipeline: Value error, scale \(100000, 100000\) must be positive pixel sizes <= 16384"),
]


@pytest.mark.parametrize(("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(ctx, capsys, argv, code, message):
    args = [a.format(**{k: v for k, v in ctx.items() if k != "snapshot"}) for a in argv]
    got = cli(args)
    out, err = capsys.readouterr()
    text = out + err
    assert got == code, text
    assert re.search(message, text), text
    assert "Traceback" not in text
    assert snapshot(ctx["existing"]) == ctx["snapshot"]  # the existing run is untouched
    for sibling in ctx["existing"].parent.glob("exp?*"):
        shutil.rmtree(sibling)


def test_full_disk_is_one_line_and_keeps_the_existing_run(ctx, capsys, monkeypatch):
    """Every checkpoint write hits a full device (/dev/full: the real ENOSPC error)."""
    from lsvr_core.engine import checkpoint as C

    real_save = torch.save

    def save_to_full_disk(obj, fh):  # noqa: ANN001
        with open("/dev/full", "wb") as full:
            real_save(obj, full)
            full.flush()

    monkeypatch.setattr(C.torch, "save", save_to_full_disk)
    code = cli(["--plugin", ctx["plugin"], "run", ctx["tiny"]])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.search(r"lsvr: error: cannot write checkpoint .*exp2/checkpoints/last.pt: No space left on device", err)
    assert re.search(r"writing the emergency checkpoint .* failed too", err)
    assert not list((ctx["existing"].parent / "exp2" / "checkpoints").iterdir())  # no partial temporaries
    assert snapshot(ctx["existing"]) == ctx["snapshot"]
    shutil.rmtree(ctx["existing"].parent / "exp2")


def test_read_only_work_dir(ctx, capsys, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root ignores file permissions: make creating anything under ro fail as it would
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if self == ro or ro in self.parents:
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    code = cli(["--plugin", ctx["plugin"], "run", ctx["tiny"], "-o", f"runtime.work_dir={ro / 'run'}"])
    assert code == 2 and "Permission denied" in capsys.readouterr().err


def test_stale_temporary_of_a_killed_save_is_removed_on_resume(ctx, capsys, tmp_path):
    """Finding 9: a kill -9 during a save leaves .last.pt.tmpPID; the next start removes it."""
    work = tmp_path / "exp"
    cfg = common.write_yaml(tmp_path / "c.yaml", common.config_dict(work, schedule={"epochs": 1}))
    assert cli(["--plugin", ctx["plugin"], "run", cfg]) == 0
    stale = work / "checkpoints" / ".last.pt.tmp999999999"  # no such process
    stale.write_bytes(b"\0" * 1024)
    assert cli(["--plugin", ctx["plugin"], "run", cfg, "--resume", "-o", "schedule.epochs=2"]) == 0
    assert not stale.exists()
    assert f"removed {stale}, left by an interrupted checkpoint write" in capsys.readouterr().err


def test_predict_needs_no_annotation_file(ctx, capsys, tmp_path):
    """Finding 4: class names come from the checkpoint, so predict runs without the annotation file."""
    work = tmp_path / "coco_run"
    cfg = yaml.safe_load((ctx["tmp"] / "coco.yaml").read_text())
    cfg["runtime"]["work_dir"] = str(work)
    path = common.write_yaml(tmp_path / "c.yaml", cfg)
    assert cli(["--plugin", ctx["plugin"], "run", path]) == 0
    cfg["data"]["val"] = dict(cfg["data"]["train"], ann_file="gone.json")
    path = common.write_yaml(tmp_path / "c2.yaml", cfg)
    image = ctx["tmp"] / "coco" / "img" / "001.png"
    capsys.readouterr()
    code = cli(["--plugin", ctx["plugin"], "predict", path, "--checkpoint", work / "checkpoints" / "last.pt", image,
                "--out", tmp_path / "pred", "--score-thresh", "0"])
    text = "".join(capsys.readouterr())
    assert code == 0, text
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert len(results) == 1 and results[0]["image_id"] == 1 and results[0]["category_id"] in (1, 3)


def test_readme_shows_ap_as_the_table_prints_it():
    """Finding 9: the README's evaluation table uses the printed format (percent), not fractions."""
    from lsvr_core.engine.progress import metrics_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| bbox "))
    printed = metrics_table({"bbox/AP": 0.579, "bbox/AP50": 0.997, "bbox/AP75": 0.626}).splitlines()[-1]
    assert row.rstrip(" .|").rstrip() == printed.rstrip(" |")
    assert "bbox AP 57.9" in readme


def test_run_log_says_how_many_val_annotations_were_dropped(ctx, capsys, tmp_path):
    """Finding 3 through a run: the coco evaluator scores what the val dataset keeps and the run log says
    how many annotations were dropped and why."""
    cfg = yaml.safe_load((ctx["tmp"] / "coco.yaml").read_text())
    cfg["runtime"]["work_dir"] = str(tmp_path / "run")
    cfg["data"]["val"] = dict(cfg["data"]["train"], ann_file="degenerate.json")
    cfg["eval"] = {"evaluator": {"type": "coco"}, "num_draw": 0}
    path = common.write_yaml(tmp_path / "c.yaml", cfg)
    assert cli(["--plugin", ctx["plugin"], "run", path]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "evaluating against the 2 annotations on 2 images the dataset keeps; 1 annotation(s)" in log
    assert "1 x degenerate bbox" in log
