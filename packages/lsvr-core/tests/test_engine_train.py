"""Engine runs on the tiny test plugin: work-dir files, resume reproduces the loss sequence, NaN guard,
best/numbered checkpoints, eval/predict verbs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


@pytest.fixture()
def mgr():
    return common.manager()


def test_run_writes_work_dir(tmp_path, mgr):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, runtime={"checkpoint_interval": 2, "checkpoint": {"keep_last": 3}})
    assert api.run(cfg, mgr, source="test") == 0
    assert (work / "config.resolved.yaml").read_text().startswith("task: bbox")
    assert "lsvr-core" in json.loads((work / "plugins.json").read_text())
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["iter"]) for r in records] == [(1, 4), (2, 8)]  # 16 images / batch 4 = 4 it/epoch
    assert all("bbox/AP" in r and r["bbox/num_images"] == 6 for r in records)
    log = (work / "log.txt").read_text()
    assert "iter 4/4 (total 8/8)" in log and "| bbox" in log
    ckpts = sorted(p.name for p in (work / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "epoch_2.pt", "last.pt"]  # checkpoint_interval 2: no epoch_1.pt
    last = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert (last["epoch"], last["iter"], last["batch_in_epoch"]) == (2, 8, 0)
    # one gallery per evaluation: num_draw 2 rows of ground truth | predictions
    assert sorted(p.name for p in (work / "predictions").glob("*.png")) == ["gallery_iter_4.png", "gallery_iter_8.png"]
    assert (work / "curves.png").is_file() and (work / "scalars.jsonl").is_file()
    assert (work / "status.txt").read_text() == "completed"
    assert [r["step"] for r in common.losses(work)] == list(range(1, 9))


def test_max_iters_caps_the_run_and_eval_max_images(tmp_path, mgr):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, schedule={"max_iters": 3}, eval={"max_images": 3})
    assert api.run(cfg, mgr) == 0
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["iter"] == 3 and records[0]["bbox/num_images"] == 3
    last = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert (last["epoch"], last["batch_in_epoch"], last["iter"]) == (0, 3, 3)


def test_seeded_run_is_reproducible_and_resume_continues_identically(tmp_path, mgr, monkeypatch):
    """An uninterrupted run vs the same run stopped by SIGINT after iteration 6 (mid epoch 2) and resumed:
    the same per-iteration losses (bit for bit on CPU) and the same final weights. Dropout and the dataset's
    random flips draw from the RNGs, so RNG and sampler position must be restored."""
    from lsvr_core.engine import api

    over = {"model": {"head": {"type": "tiny_head", "dropout": 0.2}}, "schedule": {"epochs": 3}}
    full = tmp_path / "full"
    assert api.run(common.config(mgr, full, **over), mgr) == 0
    again = tmp_path / "again"
    assert api.run(common.config(mgr, again, **over), mgr) == 0
    assert common.losses(again) == common.losses(full)

    parted = tmp_path / "parted"
    monkeypatch.setenv("TINY_SIGNAL_AT", "6")
    assert api.run(common.config(mgr, parted, **over), mgr) == 130  # 128 + SIGINT
    assert (parted / "status.txt").read_text() == "interrupted"
    ckpt = torch.load(parted / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iter"]) == (1, 2, 6)
    monkeypatch.delenv("TINY_SIGNAL_AT")
    assert api.run(common.config(mgr, parted, **over), mgr, resume="auto") == 0
    assert (parted / "status.txt").read_text() == "completed"
    got, want = common.losses(parted), common.losses(full)
    assert [r["step"] for r in got] == list(range(1, 13))
    assert got == want
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(parted / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_does_nothing(tmp_path, mgr):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, schedule={"epochs": 1})
    assert api.run(cfg, mgr) == 0
    n = len(common.losses(work))
    assert api.run(cfg, mgr, resume="auto") == 0
    assert len(common.losses(work)) == n


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, mgr, capsys):
    """loss_box turns NaN at iteration 6 (epoch 2): the run fails naming the iteration and the term;
    last.pt still holds epoch 1's state. Through the CLI: exit code 1 and no traceback."""
    from lsvr_core.cli.main import main

    work = tmp_path / "run"
    data = common.config_dict(work, model={"head": {"type": "tiny_head", "nan_after": 5}})
    path = common.write_yaml(tmp_path / "nan.yaml", data)
    code = main(["--plugin", str(common.PLUGIN), "run", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "non-finite loss at iteration 6 (epoch 2): loss_box=nan" in err
    assert "Traceback" not in err
    assert f"last good checkpoint is {work / 'checkpoints' / 'last.pt'} (iteration 4)" in err
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["iter"] == 4 and torch.isfinite(torch.cat([v.flatten() for v in ckpt["model"].values()])).all()
    assert (work / "status.txt").read_text() == "failed"


def test_init_from_reports_missing_and_mismatched_keys(tmp_path, mgr):
    from lsvr_core.engine import api

    src = tmp_path / "src"
    assert api.run(common.config(mgr, src, schedule={"epochs": 1}), mgr) == 0
    weights = torch.load(src / "checkpoints" / "last.pt", weights_only=True)["model"]
    weights.pop("backbone.body.0.bias")
    weights["extra.weight"] = torch.zeros(1)
    torch.save({"model": weights}, tmp_path / "init.pt")
    dst = tmp_path / "dst"
    cfg = common.config(mgr, dst, model={"init_from": str(tmp_path / "init.pt"), "num_classes": 5},
                        schedule={"epochs": 1, "warmup_iters": 0}, optim={"lr": 1e-9})
    assert api.run(cfg, mgr) == 0
    log = (dst / "log.txt").read_text()
    assert "missing keys: backbone.body.0.bias" in log
    assert "unexpected keys: extra.weight" in log
    assert "shape mismatch (skipped) keys: head.fc.weight, head.fc.bias" in log
    got = torch.load(dst / "checkpoints" / "last.pt", weights_only=True)["model"]
    torch.testing.assert_close(got["backbone.body.2.weight"], weights["backbone.body.2.weight"], rtol=0, atol=1e-6)


def test_eval_and_predict_verbs(tmp_path, mgr, capsys):
    from lsvr_core.engine import api
    from lsvr_core.visualize import save_png

    work = tmp_path / "run"
    cfg = common.config(mgr, work, schedule={"epochs": 1})
    assert api.run(cfg, mgr) == 0
    want = json.loads((work / "metrics.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    assert api.evaluate(cfg, mgr, checkpoint=str(work / "checkpoints" / "last.pt")) == 0
    out = capsys.readouterr().out
    assert "6 images" in out and f"{100 * want['bbox/AP']:.1f}" in out

    ds = mgr.build("dataset", cfg.data.val, root=cfg.data.root, train=False, task="bbox")
    image, meta = ds[0]
    img_path = save_png(image, tmp_path / "img" / "000000000042.png")
    out_dir = tmp_path / "pred"
    assert api.predict(cfg, mgr, checkpoint=str(work / "checkpoints" / "last.pt"), images=[str(img_path)],
                       out_dir=str(out_dir), score_thresh=0.0) == 0
    assert (out_dir / "000000000042.png").is_file()
    results = json.loads((out_dir / "results.json").read_text())
    assert len(results) == 1 and results[0]["image_id"] == 42 and results[0]["category_id"] in (1, 2, 3)
    x, y, w, h = results[0]["bbox"]
    assert w >= 0 and h >= 0 and x + w <= meta.orig_size[1] + 1e-3


def test_missing_checkpoint_is_a_clear_error(tmp_path, mgr):
    from lsvr_core.engine import api
    from lsvr_core.errors import LsvrError

    cfg = common.config(mgr, tmp_path / "run")
    with pytest.raises(LsvrError, match="checkpoint not found: .*nope.pt"):
        api.evaluate(cfg, mgr, checkpoint=str(tmp_path / "nope.pt"))


def test_loader_workers_do_not_change_the_losses(tmp_path, mgr):
    """Per-sample seeding: the dataset's random flips are the same with 0 or 2 loader workers."""
    from lsvr_core.engine import api

    runs = {}
    for workers in (0, 2):
        work = tmp_path / f"w{workers}"
        cfg = common.config(mgr, work, data={"num_workers": workers}, schedule={"epochs": 1}, eval={"num_draw": 0})
        assert api.run(cfg, mgr) == 0
        runs[workers] = common.losses(work)
    assert runs[0] == runs[2] and len(runs[0]) == 4


def test_precision_policy_and_config_errors(tmp_path, mgr):
    from lsvr_core.engine import api
    from lsvr_core.engine.optim import resolve_precision
    from lsvr_core.errors import ConfigError

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype is None and resolve_precision("fp32", cpu).name == "fp32"
    assert resolve_precision("bf16", cpu).dtype is torch.bfloat16
    assert not resolve_precision("auto", cpu).grad_scaler().is_enabled()
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="backbone 'tiny_conv' has no 'pretrained' option"):
        api.run(common.config(mgr, tmp_path / "a", model={"init_from": "torchvision"}), mgr)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_uses_bf16_autocast(tmp_path, mgr):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, runtime={"device": "cuda", "precision": "auto", "channels_last": True},
                        schedule={"epochs": 1})
    assert api.run(cfg, mgr) == 0
    log = (work / "log.txt").read_text()
    assert ("precision bf16" if torch.cuda.is_bf16_supported() else "precision fp32") in log
    assert all(math.isfinite(r["loss"]) for r in common.losses(work))
    assert json.loads((work / "metrics.jsonl").read_text().splitlines()[-1])["bbox/num_images"] == 6


def test_run_without_evaluator_still_writes_the_work_dir(tmp_path, mgr):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, eval={"evaluator": None}, schedule={"epochs": 1})
    assert api.run(cfg, mgr) == 0
    assert (work / "metrics.jsonl").read_text() == ""
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["last.pt"]  # default keep_last 1
    assert not list((work / "predictions").iterdir())


def test_training_batches_carry_the_run_progress(tmp_path, mgr):
    """``Batch.progress`` is iter / total_iters when the model sees a training batch (heads' batch transforms,
    such as MutualGuide's MixUp for the first 80 %, read it); eval batches carry None."""
    from lsvr_core.engine.distributed import DistInfo
    from lsvr_core.engine.trainer import Trainer

    cfg = common.config(mgr, tmp_path / "run", schedule={"max_iters": 5})
    trainer = Trainer(cfg, mgr, dist=DistInfo(), device=torch.device("cpu"))
    seen = []
    trainer.model.head.transform_train_batch = lambda batch: seen.append(batch.progress) or batch
    assert trainer.fit() == 0
    assert seen == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_ema_is_what_is_saved_and_evaluated_and_resume_restores_it(tmp_path, mgr):
    """``runtime.ema``: after step t the average is d_t * ema + (1 - d_t) * weights with
    d_t = decay * (1 - exp(-t / tau)) (the first step copies); checkpoints hold it as ``model`` (the trained
    weights as ``model_raw``), evaluation uses it, and a resumed run continues from the saved average."""
    from lsvr_core.engine.distributed import DistInfo
    from lsvr_core.engine.trainer import Trainer

    decay, tau = 0.9, 2.0
    ema = {"decay": decay, "tau": tau}
    cfg = common.config(mgr, tmp_path / "run", schedule={"max_iters": 4}, runtime={"ema": ema})
    trainer = Trainer(cfg, mgr, dist=DistInfo(), device=torch.device("cpu"))
    name = next(n for n, p in trainer.model.named_parameters() if p.ndim > 1)
    raw = []
    trainer.optimizer.register_step_post_hook(lambda *_: raw.append(dict(trainer.model.named_parameters())[name]
                                                                    .detach().clone()))
    evaluated = []
    original_evaluate = trainer.evaluate
    trainer.evaluate = lambda tag: evaluated.append(trainer.ema.module.state_dict()[name].clone()) or \
        original_evaluate(tag)
    assert trainer.fit() == 0
    expected = raw[0]
    for t, w in enumerate(raw[1:], start=2):  # hand-computed ramped EMA
        d = decay * (1 - math.exp(-t / tau))
        expected = d * expected + (1 - d) * w
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    torch.testing.assert_close(ckpt["model"][name], expected)
    torch.testing.assert_close(ckpt["model_raw"][name], raw[-1])
    assert not torch.allclose(expected, raw[-1])
    torch.testing.assert_close(evaluated[-1], expected)
    cfg2 = common.config(mgr, tmp_path / "run", schedule={"max_iters": 6}, runtime={"ema": ema})
    resumed = Trainer(cfg2, mgr, dist=DistInfo(), device=torch.device("cpu"), resume="auto")
    assert int(resumed.ema.n_averaged) == 4
    torch.testing.assert_close(resumed.ema.module.state_dict()[name], expected)
    torch.testing.assert_close(dict(resumed.model.named_parameters())[name].detach(), raw[-1])


def test_sgd_nesterov_option():
    from lsvr_core.config.sections import OptimSection
    from lsvr_core.engine.optim import build_optimizer

    model = torch.nn.Linear(2, 2)
    assert build_optimizer(model, OptimSection(nesterov=True)).defaults["nesterov"] is True
    assert build_optimizer(model, OptimSection()).defaults["nesterov"] is False


@pytest.mark.parametrize(("retention", "expected"), [
    ({}, ["best.pt", "last.pt"]),
    ({"save_best": False}, ["last.pt"]),
    ({"keep_last": 2}, ["best.pt", "epoch_3.pt", "last.pt"]),
    ({"keep_last": 3, "save_best": False}, ["epoch_2.pt", "epoch_3.pt", "last.pt"]),
])
def test_checkpoint_retention(tmp_path, mgr, retention, expected):
    from lsvr_core.engine import api

    work = tmp_path / "run"
    cfg = common.config(mgr, work, runtime={"checkpoint": retention}, schedule={"epochs": 3})
    assert api.run(cfg, mgr) == 0
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == expected
    last = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 3
