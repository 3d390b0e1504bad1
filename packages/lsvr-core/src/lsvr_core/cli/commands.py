"""Implementations of the ``lsvr`` verbs. Only ``run``, ``eval``, ``predict`` and ``env`` import torch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lsvr_core.errors import ConfigError, LsvrError, PluginError


def _load(args: argparse.Namespace, ref: str | None = None) -> Any:
    from lsvr_core.config import load_config

    return load_config(ref or args.config, args.manager, args.override)


def _default_ref(args: argparse.Namespace) -> str:
    recipe = args.manager.default_recipe()
    if recipe is None:
        raise ConfigError("no CONFIG given and no installed plugin ships a default recipe; see `lsvr recipes`")
    return recipe.ref


def _engine() -> Any:
    try:
        from lsvr_core.engine import api
    except ImportError as err:
        if "lsvr_core.engine.api" not in str(err):
            raise
        raise LsvrError("the training engine is not built yet (lsvr_core.engine.api is missing)") from None
    return api


def cmd_run(args: argparse.Namespace) -> int:
    args.manager.raise_for_failures()
    ref = args.config or _default_ref(args)
    cfg = _load(args, ref)
    print(f"lsvr run {ref}", file=sys.stderr)
    return _engine().run(cfg, args.manager, resume=args.resume, nproc_per_node=args.nproc_per_node,
                         source=ref, overrides=args.override, plugin_files=getattr(args, "plugin", []))


def cmd_eval(args: argparse.Namespace) -> int:
    args.manager.raise_for_failures()
    return _engine().evaluate(_load(args), args.manager, checkpoint=args.checkpoint)


def cmd_predict(args: argparse.Namespace) -> int:
    args.manager.raise_for_failures()
    return _engine().predict(_load(args), args.manager, checkpoint=args.checkpoint, images=args.images,
                             out_dir=args.out, score_thresh=args.score_thresh)


def cmd_validate(args: argparse.Namespace) -> int:
    from lsvr_core.config.factories import check_factories

    args.manager.raise_for_failures()
    cfg = _load(args)
    check_factories(cfg, args.manager)
    head = cfg.model.head.type
    print(f"{args.config}: ok (task {cfg.task}, {cfg.model.backbone.type} -> "
          f"{cfg.model.neck.type if cfg.model.neck else 'no neck'} -> {head})")
    if getattr(args, "build", False):
        from lsvr_core.engine.build_check import build_check

        for line in build_check(cfg, args.manager, image_size=args.image_size).lines():
            print(f"  {line}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from lsvr_core.config import config_to_yaml

    sys.stdout.write(config_to_yaml(_load(args)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from lsvr_core.config import build_config_model

    schema = build_config_model(args.manager).model_json_schema()
    schema["title"] = "lsvr run config"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    records = list(args.manager.records.values())
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2))
        return 0
    width = max(len(r.name) for r in records)
    for r in records:
        count = sum(len(v) for v in r.components.values())
        line = f"{r.name:<{width}}  {r.status:<8}  {r.distribution} {r.version}  ({r.source}, {count} components)"
        print(line)
        if r.error:
            print(f"{'':<{width}}  error: {r.error}")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from lsvr_core.config.resolve import slot_interfaces
    from lsvr_core.specs import KINDS

    if args.kind and args.kind not in KINDS:
        raise ConfigError(f"unknown kind {args.kind!r}; valid: {', '.join(KINDS)}")
    specs = args.manager.components(args.kind)
    if args.json:
        rows = [{"kind": s.kind, "name": s.name, "summary": s.summary, "tasks": list(s.tasks),
                 "implements": list(s.implements), "slots": slot_interfaces(s.config) if s.config else {},
                 "distribution": s.distribution, "plugin": s.plugin} for s in specs]
        print(json.dumps(rows, indent=2))
    else:
        for s in specs:
            tasks = f" [{', '.join(s.tasks)}]" if s.tasks else ""
            implements = f" (implements {', '.join(s.implements)})" if s.implements else ""
            slots = slot_interfaces(s.config) if s.config else {}
            calls = f" (slots: {', '.join(f'{k}: {v}' for k, v in slots.items())})" if slots else ""
            print(f"{s.kind:<10} {s.name:<22} {s.distribution:<18} {s.summary}{tasks}{implements}{calls}")
    if args.manager.conflicts:  # listed above with the first registration; the conflict itself is an error
        raise PluginError("\n".join(args.manager.conflicts))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    recipes = args.manager.recipes()
    default = args.manager.default_recipe()
    if args.json:
        print(json.dumps([{"ref": r.ref, "summary": r.summary, "distribution": r.distribution,
                           "default": default is not None and r.ref == default.ref} for r in recipes], indent=2))
        return 0
    for r in recipes:
        mark = " (default)" if default is not None and r.ref == default.ref else ""
        print(f"{r.ref:<36} {r.summary}{mark}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    import platform

    import torch

    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"torch        {torch.__version__}")
    try:
        import triton

        print(f"triton       {triton.__version__}")
    except ImportError:
        print("triton       not installed")
    print(f"CUDA         {torch.version.cuda or 'none'}; available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"GPU {i}        {torch.cuda.get_device_name(i)}")
    print(f"CPU threads  {torch.get_num_threads()}")
    for r in args.manager.records.values():
        print(f"plugin       {r.name}: {r.distribution} {r.version} [{r.status}]")
    for info in args.manager.hook.lsvr_env_info():
        for label, value in (info or {}).items():
            print(f"{label:<12} {value}")
    return 0


def cmd_convert_weights(args: argparse.Namespace) -> int:
    converters = args.manager.converters()
    if args.list or not args.format:
        if not converters:
            print("no weight converters registered by the installed plugins")
        for conv in converters:
            print(f"{conv.name:<28} {conv.summary}  [{conv.distribution}]")
        return 0
    if not (args.src and args.dst):
        raise ConfigError("convert-weights needs FORMAT SRC DST (see `lsvr convert-weights --list`)")
    from lsvr_core.engine.convert import convert_weights

    state = convert_weights(args.manager, args.format, args.src, args.dst)
    n = sum(int(v.numel()) for v in state.values())
    print(f"{args.dst}: {len(state)} tensors, {n:,} values, converted from {args.src} ({args.format}); "
          f"use it with -o model.init_from={args.dst}")
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from lsvr_core.scaffold import write_plugin

    path = write_plugin(args.name, args.dir, kind=args.kind, registry=args.manager)
    print(f"wrote {path}; install it with: pip install -e {path}")
    return 0
