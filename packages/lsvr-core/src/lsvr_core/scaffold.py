"""``lsvr new-plugin NAME``: write a working third-party plugin package from templates.

The package (``lsvr-NAME/``) has a pyproject with the ``lsvr`` entry point, a src layout, a torch-free
``plugin.py`` and ``config.py``, one component (a neck) with its factory module, a pytest file that runs
:func:`lsvr_core.testing.check_neck` on it, and a README. Templates live in ``lsvr_core/testing/templates``.
Torch-free.
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
# template file -> path inside the new package ({module} is the import name)
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/{module}/__init__.py",
    "config.py.tmpl": "src/{module}/config.py",
    "plugin.py.tmpl": "src/{module}/plugin.py",
    "neck.py.tmpl": "src/{module}/neck.py",
    "test_neck.py.tmpl": "tests/test_neck.py",
}


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from a plugin name such as ``my-neck``.

    Returns:
        ``dist`` (``lsvr-my-neck``), ``module`` (``lsvr_my_neck``), ``plugin`` (entry-point name ``my_neck``),
        ``component`` (the neck's YAML ``type``, ``my_neck``) and ``Class`` (``MyNeck``).
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


def write_plugin(name: str, parent_dir: str | Path = ".", *, registry: Any = None) -> Path:
    """Write the package ``lsvr-NAME`` under ``parent_dir`` and return its folder.

    ``registry`` (the CLI's plugin manager) is asked whether the component name is taken; None skips the check.

    Raises:
        ConfigError: bad name, the folder already exists, or a neck of that name is already registered.
    """
    names = plugin_names(name)
    root = Path(parent_dir) / names["dist"]
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or --dir")
    taken = {spec.name for spec in registry.components("neck")} if registry is not None else set()
    if names["component"] in taken:
        raise ConfigError(f"a neck named {names['component']!r} is already registered; choose another name")
    templates = files("lsvr_core.testing") / "templates" / "plugin"
    for template, target in _FILES.items():
        text = Template((templates / template).read_text(encoding="utf-8")).substitute(names)
        path = root / target.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
