"""lsvr_ops_triton: deformable ops with Triton kernels, a fast CPU path and PyTorch references.

Importing this package never imports torch: the public names below load their modules on first access.

* :func:`deform_conv2d`, :func:`pyramid_deform_conv2d` (:mod:`.functional`)
* :class:`DeformConv2d`, :class:`ModulatedDeformConv2d` (:mod:`.modules`)
* :func:`backend_report`, :func:`choose_backend` (:mod:`.dispatch`, torch-free)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "deform_conv2d": "lsvr_ops_triton.functional",
    "pyramid_deform_conv2d": "lsvr_ops_triton.functional",
    "DeformConv2d": "lsvr_ops_triton.modules",
    "ModulatedDeformConv2d": "lsvr_ops_triton.modules",
    "backend_report": "lsvr_ops_triton.dispatch",
    "choose_backend": "lsvr_ops_triton.dispatch",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lsvr_ops_triton' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
