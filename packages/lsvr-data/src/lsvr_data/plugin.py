"""The data plugin: registers its components with lsvr (torch-free)."""

from __future__ import annotations

import argparse

from lsvr_core.api import ComponentSpec, hookimpl
from lsvr_data import config as c
from lsvr_data import fields

_TASKS = ("bbox", "segm", "pose_bbox", "pose_kbox")


@hookimpl
def lsvr_datasets() -> list[ComponentSpec]:
    return [
        ComponentSpec("dataset", "coco", c.CocoDatasetConfig, "lsvr_data.coco:build_coco",
                      "COCO json (instances / person_keypoints) + images; boxes, polygons, RLE, keypoints", _TASKS),
        ComponentSpec("dataset", "voc", c.VocDatasetConfig, "lsvr_data.voc:build_voc",
                      "PASCAL VOC XML boxes with difficult flags; VOC07+12 concatenation", ("bbox",)),
        ComponentSpec("dataset", "synthetic", c.SyntheticDatasetConfig, "lsvr_data.synthetic:build_synthetic",
                      "seeded procedural shapes on textured backgrounds (no download needed)", _TASKS),
    ]


@hookimpl
def lsvr_evaluators() -> list[ComponentSpec]:
    return [
        ComponentSpec("evaluator", "coco", c.CocoEvaluatorConfig, "lsvr_data.coco_eval:build_coco_evaluator",
                      "pycocotools COCOeval: bbox, segm, keypoints (12 stats, per-class AP)", _TASKS),
        ComponentSpec("evaluator", "voc", c.VocEvaluatorConfig, "lsvr_data.voc_eval:build_voc_evaluator",
                      "VOC mAP@0.5 (07 11-point or area) and mAP@[.5:.95], difficult ignored", ("bbox",)),
    ]


@hookimpl
def lsvr_target_fields() -> list:
    return list(fields.DECLARED)


@hookimpl
def lsvr_add_commands(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = subparsers.add_parser("eval-results", help="score a COCO results JSON against a COCO ground-truth JSON")
    p.add_argument("gt_json", metavar="GT_JSON")
    p.add_argument("results_json", metavar="RESULTS_JSON")
    p.add_argument("--iou-type", choices=("bbox", "segm", "keypoints"), default="bbox")
    p.add_argument("--backend", choices=("auto", "pycocotools", "faster_coco_eval", "hotcoco"), default="auto",
                   help="COCOeval implementation (identical stats; auto = fastest installed)")
    p.add_argument("--json", action="store_true", help="print the stats as one JSON object")

    def run(args: argparse.Namespace) -> int:
        from lsvr_data.cli import eval_results

        return eval_results(args.gt_json, args.results_json, args.iou_type, as_json=args.json,
                            backend=args.backend)

    p.set_defaults(func=run)

    d = subparsers.add_parser("data", help="dataset utilities (data check)")
    dsub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    c = dsub.add_parser("check", help="decode every image and validate every annotation of a config's datasets")
    c.add_argument("config", help="YAML file or recipe (namespace:name)")
    c.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set a dotted config key to a YAML value (repeatable)")

    def check(args: argparse.Namespace) -> int:
        from lsvr_core.api import load_config
        from lsvr_data.check import data_check

        args.manager.raise_for_failures()
        return data_check(load_config(args.config, args.manager, args.override), args.manager)

    c.set_defaults(func=check)
