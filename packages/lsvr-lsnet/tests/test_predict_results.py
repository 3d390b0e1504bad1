"""``lsvr predict`` on LSNet segm / pose models writes ``segmentation`` / ``keypoints``, and the coco evaluator
writes identical records for the same predictions (one results writer, issue #12 item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from lsvr_core.config import load_config
from lsvr_core.engine import api
from lsvr_core.engine.build import build_model
from lsvr_core.plugins import get_plugin_manager
from lsvr_core.structures import collate
from lsvr_core.visualize import save_png


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segm", "pose_bbox"])
def test_predict_writes_segmentation_and_keypoints_like_the_evaluator(tmp_path, task: str) -> None:
    mgr = get_plugin_manager()
    cfg = load_config("lsnet:demo", mgr, [
        f"task={task}", "model.head.score_thr=0.0", "model.head.max_per_img=20", "data.val.num_images=2",
        "data.val.image_size=96", "data.train.image_size=96", "data.train.num_images=2", "eval.evaluator.max_dets=20",
        f"runtime.work_dir={tmp_path / 'run'}",
    ])
    torch.manual_seed(0)
    model = build_model(cfg, mgr).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)

    ds = mgr.build("dataset", cfg.data.val, root=cfg.data.root, train=False, task=task)
    image, meta = ds[0]
    assert meta.scale == (1.0, 1.0)  # the val pipeline keeps 96 px images: the PNG is the model input
    img_path = save_png(image, tmp_path / "img" / f"{meta.image_id}.png")
    out = tmp_path / "pred"
    assert api.predict(cfg, mgr, checkpoint=str(ckpt), images=[str(img_path)], out_dir=str(out),
                       score_thresh=0.0) == 0
    written = json.loads((out / "results.json").read_text())
    # pose drops detections smaller than pose_min_area (an untrained head predicts few large ones)
    assert (len(written) == 20 if task == "segm" else len(written) >= 1)
    assert all(r["image_id"] == meta.image_id for r in written)
    if task == "segm":
        for r in written:
            assert r["segmentation"]["size"] == [96, 96]
            mask = mask_utils.decode({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"]})
            x, y, w, h = r["bbox"]  # a contour's mask lies inside its box (LSNet: box = contour box)
            ys, xs = np.nonzero(mask)
            if len(xs):
                assert xs.min() >= np.floor(x) - 1 and xs.max() <= np.ceil(x + w) + 1
                assert ys.min() >= np.floor(y) - 1 and ys.max() <= np.ceil(y + h) + 1
    else:
        assert all(len(r["keypoints"]) == 51 for r in written)

    evaluator = mgr.build("evaluator", cfg.eval.evaluator, dataset=ds, task=task)
    with torch.no_grad():
        preds = model(collate([ds[0]], cfg.data.size_divisor))
    evaluator.process(preds)
    assert evaluator.results == written
