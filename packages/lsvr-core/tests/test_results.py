"""The one results writer: COCO records from original-frame predictions (oracle: pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from lsvr_core.api import DataError, Predictions, predictions_to_results


def _pred(**kw) -> Predictions:  # noqa: ANN003
    p = Predictions(torch.tensor([[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 8.0, 4.0]]), torch.tensor([0.2, 0.9]),
                    torch.tensor([1, 0]), image_id=7, frame="original", **kw)
    return p


def test_boxes_scores_categories_sorted_by_score() -> None:
    recs = predictions_to_results(_pred(), (10, 12), category_ids=[3, 5])
    assert recs == [
        {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 8.0, 4.0], "score": pytest.approx(0.9)},
        {"image_id": 7, "category_id": 5, "bbox": [1.0, 2.0, 4.0, 4.0], "score": pytest.approx(0.2)},
    ]
    assert [r["category_id"] for r in predictions_to_results(_pred(), (10, 12))] == [1, 2]  # label + 1
    assert len(predictions_to_results(_pred(), (10, 12), max_dets=1)) == 1


def test_masks_and_contours_become_the_pycocotools_rle() -> None:
    masks = torch.zeros(2, 10, 12)
    masks[0, 2:6, 1:5] = 0.7
    masks[1, 0:4, 0:8] = 0.4  # below 0.5: empty
    recs = predictions_to_results(_pred(masks=masks), (10, 12), iou_types=["bbox", "segm"])
    want = mask_utils.encode(np.asfortranarray((masks[0].numpy() >= 0.5).astype(np.uint8)))
    assert recs[1]["segmentation"] == {"size": [10, 12], "counts": want["counts"].decode("ascii")}
    assert mask_utils.area(recs[1]["segmentation"]) == 16 and mask_utils.area(recs[0]["segmentation"]) == 0

    square = torch.tensor([[[1.0, 2.0], [5.0, 2.0], [5.0, 6.0], [1.0, 6.0]], [[0.0, 0.0], [8.0, 0.0], [8.0, 4.0],
                                                                            [0.0, 4.0]]])
    recs = predictions_to_results(_pred(contours=square), (10, 12))  # written because contours are present
    want = mask_utils.merge(mask_utils.frPyObjects([[1.0, 2.0, 5.0, 2.0, 5.0, 6.0, 1.0, 6.0]], 10, 12))
    assert recs[1]["segmentation"]["counts"] == want["counts"].decode("ascii")


def test_keypoints_and_missing_fields() -> None:
    kps = torch.arange(2 * 17 * 3, dtype=torch.float32).view(2, 17, 3)
    recs = predictions_to_results(_pred(keypoints=kps), (10, 12))
    assert recs[0]["keypoints"] == kps[1].flatten().tolist() and "segmentation" not in recs[0]
    with pytest.raises(DataError, match="image 7: segm results need Predictions.masks or Predictions.contours"):
        predictions_to_results(_pred(), (10, 12), iou_types=["segm"])
    with pytest.raises(DataError, match="image 7: keypoints results need Predictions.keypoints"):
        predictions_to_results(_pred(), (10, 12), iou_types=["keypoints"])
    with pytest.raises(DataError, match="need original-frame predictions"):
        predictions_to_results(Predictions(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)),
                               (10, 12))
