"""MixUp of training batches as the MutualGuide reference does it (spec §5; ``a192256:main.py:166-181``).

For the first ``until`` (80 %) of the iterations: lambda ~ Beta(alpha, alpha) (alpha 1: uniform), one random
permutation ``index`` of the batch, images lambda * x + (1 - lambda) * x[index], and every loss term computed once
against the batch's own targets and once against the permuted targets, mixed lambda / (1 - lambda) (the head does
that part, :meth:`~lsvr_mutualguide.head.MutualGuideHead.forward`). Mixing the raw [0, 255] images before the
detector normalises them equals the reference's mixing of normalised images (the normalisation is affine and
lambda + (1 - lambda) = 1), for the square, unpadded inputs of the MutualGuide recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lsvr_core.api import Batch


@dataclass
class MixUpBatch(Batch):
    """A mixed batch: ``images`` already mixed; ``lam`` the weight of the batch's own targets; ``index`` (B,)
    int64 the permutation whose targets get 1 - lam."""

    lam: float = 1.0
    index: Tensor | None = None


class MixUp:
    """``__call__(batch) -> batch``: a :class:`MixUpBatch` while ``batch.progress < until``, else ``batch``
    unchanged (also when ``progress`` is None, i.e. outside the trainer).

    Args:
        alpha: Beta(alpha, alpha) parameter (1.0 in the reference).
        until: fraction of the training iterations that use MixUp (0.8).
    """

    def __init__(self, alpha: float = 1.0, until: float = 0.8) -> None:
        self.alpha, self.until = alpha, until

    def __call__(self, batch: Batch) -> Batch:
        if batch.progress is None or batch.progress >= self.until:
            return batch
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        index = torch.randperm(batch.images.shape[0]).to(batch.images.device)
        images = lam * batch.images + (1 - lam) * batch.images[index]
        return MixUpBatch(images, batch.targets, batch.progress, lam=lam, index=index)
