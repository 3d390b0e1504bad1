"""Conformance suites plugin authors call from pytest (see :mod:`lsvr_core.testing.suites`).

Example::

    from lsvr_core.testing import check_head
    from my_pkg.config import MyHeadConfig

    def test_my_head_conforms():
        check_head("my_pkg.head:build_my_head", MyHeadConfig(), task="bbox")

``fit_and_score(run_config_dict, iters=..., lr=...)`` trains a small model from a run config on a fixed batch
and returns its evaluator metrics, for learning-floor tests (see :mod:`lsvr_core.testing.floors`).
"""

from lsvr_core.testing.common import assert_gradients, check_config_roundtrip
from lsvr_core.testing.floors import FitResult, fit_and_score
from lsvr_core.testing.suites import check_assigner, check_backbone, check_head, check_loss, check_neck
from lsvr_core.testing.synthetic import feature_size, make_batch, make_features, make_targets

__all__ = [
    "FitResult",
    "assert_gradients",
    "check_assigner",
    "check_backbone",
    "check_config_roundtrip",
    "check_head",
    "check_loss",
    "check_neck",
    "feature_size",
    "fit_and_score",
    "make_batch",
    "make_features",
    "make_targets",
]
