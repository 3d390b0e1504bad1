"""The ``lsvr`` command line.

Every verb is a small function in :mod:`lsvr_core.cli.commands`. User mistakes raise
:class:`~lsvr_core.errors.LsvrError`; :func:`main` prints the message (no traceback) and returns its exit code
(2 for config and plugin errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lsvr_core import __version__
from lsvr_core.errors import LsvrError, user_message


def build_parser(manager_factory=None) -> argparse.ArgumentParser:  # noqa: ANN001
    from lsvr_core.cli import commands as cmd

    parser = argparse.ArgumentParser(prog="lsvr", description="Location-sensitive visual recognition toolbox.")
    parser.add_argument("--version", action="version", version=f"lsvr {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="load an extra plugin from a Python file (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("config", nargs=None if required else "?", help="YAML file or recipe (namespace:name)")
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="set a dotted config key to a YAML value, e.g. -o schedule.epochs=2 (repeatable)")

    p = sub.add_parser("run", help="train (and evaluate) a model; no CONFIG runs the default recipe")
    config_args(p, required=False)
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="resume from CKPT, or without a path from the latest run of runtime.work_dir "
                   "(work_dirs/x, x2, x3, ...); without --resume a new run never overwrites an old one")
    p.add_argument("--nproc-per-node", type=int, default=1, help="spawn N processes (torchrun, DDP)")
    p.set_defaults(func=cmd.cmd_run)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the config's val split")
    config_args(p)
    p.add_argument("--checkpoint", required=True)
    p.set_defaults(func=cmd.cmd_eval)

    p = sub.add_parser("predict", help="draw predictions on images and write COCO results JSON",
                       description="With --engine torch (default) CONFIG is a run config and --checkpoint its "
                       "weights; with --engine onnxruntime|pt2 CONFIG is a file written by `lsvr export`.")
    config_args(p)
    p.add_argument("--checkpoint", default=None, help="weights (required with --engine torch)")
    p.add_argument("--engine", choices=("torch", "onnxruntime", "pt2"), default="torch",
                   help="run the PyTorch model, or an exported .onnx (onnxruntime) / .pt2 (torch.export) file")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", default=None, help="output folder (default: work_dir/predict)")
    p.add_argument("--score-thresh", type=float, default=0.3, help="draw detections above this score")
    p.set_defaults(func=cmd.cmd_predict)

    p = sub.add_parser("export", help="export a trained detector to ONNX or torch.export (pt2)",
                       description="Write the detector (normalisation, backbone, neck, head) as an ONNX or pt2 file "
                       "plus a .lsvr.json sidecar (preprocessing, inputs, outputs, class names, versions, config). "
                       "With --postprocess the graph also decodes and runs NMS (image -> boxes, scores, labels, ...); "
                       "without it the graph ends at the raw head outputs and decoding runs in Python. Run either "
                       "with: lsvr predict --engine onnxruntime|pt2 MODEL IMAGES.")
    config_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=("onnx", "pt2"), required=True)
    p.add_argument("--output", default=None, help="file to write (default: the checkpoint path with .onnx/.pt2)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                      help="fixed input size (multiples of data.size_divisor; default: the val pipeline's size)")
    size.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    post = p.add_mutually_exclusive_group()
    post.add_argument("--postprocess", dest="postprocess", action="store_true",
                      help="decoding and NMS in the graph (fixed input size; inputs images, image_size, "
                      "scale_factor)")
    post.add_argument("--no-postprocess", dest="postprocess", action="store_false", help="raw outputs (default)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=cmd.cmd_export, postprocess=False)

    p = sub.add_parser("validate", help="check a config without importing torch (--build: build it and run it once)")
    config_args(p)
    p.add_argument("--build", action="store_true",
                   help="also build the model on CPU and run one training and one inference forward on a tiny "
                   "synthetic batch; prints the parameter count")
    p.add_argument("--image-size", type=int, default=128, metavar="PX",
                   help="--build: side of the synthetic images (rounded up to data.size_divisor)")
    p.set_defaults(func=cmd.cmd_validate)

    p = sub.add_parser("config", help="config utilities")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    ps = csub.add_parser("show", help="print the fully resolved config as YAML")
    config_args(ps)
    ps.set_defaults(func=cmd.cmd_config_show)

    p = sub.add_parser("schema", help="print the JSON Schema of run configs (all installed plugins)")
    p.set_defaults(func=cmd.cmd_schema)

    p = sub.add_parser("plugins", help="list plugins, their distributions and status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd.cmd_plugins)

    p = sub.add_parser("components", help="list registered components")
    p.add_argument("kind", nargs="?", help="backbone, neck, head, assigner, loss, dataset, evaluator, layer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd.cmd_components)

    p = sub.add_parser("recipes", help="list shipped recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd.cmd_recipes)

    p = sub.add_parser("env", help="python, torch, triton, CUDA, GPU, plugin versions, kernel backends")
    p.set_defaults(func=cmd.cmd_env)

    formats = manager_factory().converters() if manager_factory is not None else []
    p = sub.add_parser("convert-weights", help="convert a reference checkpoint to lsvr weights (model.init_from)",
                       description="Convert a released checkpoint of a reference implementation into an lsvr "
                       "weights file. Formats are registered by the installed plugins.",
                       epilog="formats: " + ("; ".join(f"{c.name} ({c.summary})" for c in formats) or "none installed"))
    p.add_argument("format", nargs="?", help="source format, e.g. mutualguide-v1 (see --list)")
    p.add_argument("src", nargs="?", help="the reference checkpoint (.pth)")
    p.add_argument("dst", nargs="?", help="the lsvr weights file to write")
    p.add_argument("--list", action="store_true", help="list the registered formats")
    p.set_defaults(func=cmd.cmd_convert_weights)

    p = sub.add_parser("new-plugin", help="write a working third-party plugin package")
    p.add_argument("name", help="plugin name, e.g. 'my-head' (distribution lsvr-my-head)")
    p.add_argument("--kind", default="neck", choices=("backbone", "neck", "head", "assigner", "loss", "dataset"),
                   help="the component the package registers (default: neck)")
    p.add_argument("--dir", default=".", help="parent folder of the new package")
    p.set_defaults(func=cmd.cmd_new_plugin)

    if manager_factory is not None:
        manager_factory().hook.lsvr_add_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lsvr`` script; returns the process exit code."""
    from lsvr_core.plugins import get_plugin_manager

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    try:
        manager = get_plugin_manager(known.plugin, reload=True)
        parser = build_parser(lambda: manager)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        args.manager = manager
        return int(args.func(args) or 0)
    except LsvrError as err:
        print(f"lsvr: error: {user_message(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("lsvr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
