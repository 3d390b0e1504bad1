"""``lsvr new-plugin NAME --kind KIND``: write a working third-party plugin package from templates.

The package (``lsvr-NAME/``) has a pyproject with the ``lsvr`` entry point, a src layout, a torch-free
``plugin.py`` and ``config.py``, one component of the chosen kind (backbone, neck, head, assigner, loss or
dataset) in ``<kind>.py`` with its factory ``build_<kind>``, a pytest file that runs lsvr's conformance checks
on it, and a README. The generated code imports lsvr only through :mod:`lsvr_core.api`. Templates live in
``lsvr_core/testing/templates/plugin`` (shared files at the top, one folder per kind). Torch-free.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from lsvr_core import __version__
from lsvr_core.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")
# shared template -> path inside the new package ({module} is the import name, {kind} the component kind)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/{module}/__init__.py",
    "plugin.py.tmpl": "src/{module}/plugin.py",
    "{kind}/config.py.tmpl": "src/{module}/config.py",
    "{kind}/component.py.tmpl": "src/{module}/{kind}.py",
    "{kind}/test_component.py.tmpl": "tests/test_{kind}.py",
}
# per kind: registration hook, one-line summary, extra ComponentSpec arguments, a config snippet using it
KINDS: dict[str, dict[str, str]] = {
    "backbone": {
        "hook": "lsvr_backbones", "summary": "a plain conv trunk returning c3, c4, c5", "spec_extra": "",
        "usage": "model:\n  backbone: {type: $component, width: 32}\n  neck: {type: fpn, out_channels: 64}\n"
                 "  head: {type: fcos, num_convs: 1}",
    },
    "neck": {
        "hook": "lsvr_necks", "summary": "1x1 conv + GroupNorm per level to a common width", "spec_extra": "",
        "usage": "model:\n  backbone: {type: resnet, depth: 18}\n  neck: {type: $component, out_channels: 256}\n"
                 "  head: {type: fcos, in_levels: [p3, p4, p5]}",
    },
    "head": {
        "hook": "lsvr_heads", "summary": "a dense one-stage box head with classification_loss and box_loss slots",
        "spec_extra": ", tasks=(\"bbox\",)",
        "usage": "task: bbox\nmodel:\n  backbone: {type: resnet, depth: 18}\n"
                 "  neck: {type: fpn, out_channels: 64, num_extra: 0}\n"
                 "  head: {type: $component, loss_box: {type: giou}}",
    },
    "assigner": {
        "hook": "lsvr_assigners", "summary": "grid points to the smallest GT box containing them",
        "spec_extra": ", implements=(\"point_assigner\",)",
        "usage": "model:\n  head:\n    type: lsnet\n    assigner_init: {type: $component, margin: 0}",
    },
    "loss": {
        "hook": "lsvr_losses", "summary": "log-cosh regression loss",
        "spec_extra": ", implements=(\"regression_loss\",)",
        "usage": "model:\n  head:\n    type: mutual_guide\n    loss_bbox: {type: $component, loss_weight: 1.0}",
    },
    "dataset": {
        "hook": "lsvr_datasets", "summary": "random filled rectangles drawn on the fly",
        "spec_extra": ", tasks=(\"bbox\",)",
        "usage": "data:\n  train: {type: $component, num_images: 64, classes: 3}\n"
                 "  val: {type: $component, num_images: 8, classes: 3, seed: 1}\nmodel:\n  num_classes: 3",
    },
}


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from a plugin name such as ``my-neck``.

    Returns:
        ``dist`` (``lsvr-my-neck``), ``module`` (``lsvr_my_neck``), ``plugin`` (entry-point name ``my_neck``),
        ``component`` (the component's YAML ``type``, ``my_neck``) and ``Class`` (``MyNeck``).
    Raises:
        ConfigError: the name is not lower-case letters and digits separated by single ``-`` or ``_``.
    """
    base = name[5:] if name.startswith("lsvr-") else name
    if not _NAME.match(base):
        raise ConfigError(f"plugin name {name!r}: use lower-case letters and digits separated by '-' or '_', "
                          f"starting with a letter (e.g. 'my-neck')")
    snake = base.replace("-", "_")
    return {
        "dist": f"lsvr-{base}",
        "module": f"lsvr_{snake}",
        "plugin": snake,
        "component": snake,
        "Class": "".join(part.capitalize() for part in snake.split("_")),
        "core_version": __version__,
    }


def write_plugin(name: str, parent_dir: str | Path = ".", *, kind: str = "neck", registry: Any = None) -> Path:
    """Write the package ``lsvr-NAME`` with one component of ``kind`` under ``parent_dir``; return its folder.

    ``registry`` (the CLI's plugin manager) is asked whether the component name is taken; None skips the check.

    Raises:
        ConfigError: bad name or kind, the folder already exists, or a component of that kind and name is
            already registered.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    names = plugin_names(name)
    root = Path(parent_dir) / names["dist"]
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or --dir")
    taken = {spec.name for spec in registry.components(kind)} if registry is not None else set()
    if names["component"] in taken:
        raise ConfigError(f"a {kind} named {names['component']!r} is already registered; choose another name")
    values = {**names, **KINDS[kind], "kind": kind}
    values["usage"] = Template(values["usage"]).substitute(names)
    templates = files("lsvr_core.testing") / "templates" / "plugin"
    for template, target in _FILES.items():
        text = Template((templates / template.format(kind=kind)).read_text(encoding="utf-8")).substitute(values)
        path = root / target.format(kind=kind, **names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
