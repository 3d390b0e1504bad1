"""Backend selection for every op in lsvr_ops_triton (Triton kernels vs pure-PyTorch paths).

The environment variable ``LSVR_KERNEL_BACKEND`` picks the backend:

* ``auto`` (default): ``"triton"`` when any tensor argument is on CUDA, Triton imports and the kernels compute
  the tensors' dtypes, else ``"torch"``.
* ``triton``: the Triton kernels for the dtypes they compute (:func:`kernels_compute`; other dtypes, e.g.
  float64, take the ``torch`` path). On CPU tensors this is only allowed under ``TRITON_INTERPRET=1``
  (the Triton interpreter, used by the tests); otherwise a :class:`~lsvr_core.errors.ConfigError` is raised.
* ``torch``: always the PyTorch path (on CPU the fast sampling + matmul implementation, on CUDA the
  reference: torchvision's op or grid_sample + matmul).

This module imports torch only inside functions, so importing it is cheap.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from lsvr_core.api import ConfigError

ENV_VAR = "LSVR_KERNEL_BACKEND"
BACKENDS = ("auto", "triton", "torch")


def requested_backend() -> str:
    """The value of ``LSVR_KERNEL_BACKEND`` (lower-cased, default ``"auto"``).

    Raises:
        ConfigError: the variable holds something other than ``auto``, ``triton`` or ``torch``.
    """
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ConfigError(f"environment variable {ENV_VAR}={value!r} is invalid; use one of {', '.join(BACKENDS)}")
    return value


def triton_interpret() -> bool:
    """True when ``TRITON_INTERPRET=1`` (Triton kernels run in the CPU interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0", "false", "False")


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """``None`` when ``import triton`` works, else the reason it does not (cached)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "no triton"
        return f"{type(err).__name__}: {err}"
    return None


def choose_backend(*tensors: Any) -> str:
    """Pick ``"triton"`` or ``"torch"`` for an op called on ``tensors``.

    Args:
        tensors: the op's tensor arguments (``None`` entries are ignored); their ``device`` and ``dtype`` are
            read.
    Returns:
        ``"triton"`` or ``"torch"``; ``"torch"`` whenever a tensor's dtype is one the kernels do not compute
        (:func:`kernels_compute`), whatever ``LSVR_KERNEL_BACKEND`` says.
    Raises:
        ConfigError: ``LSVR_KERNEL_BACKEND`` is invalid, or it asks for ``triton`` while Triton cannot be
            imported, or for CPU tensors without ``TRITON_INTERPRET=1``.
    """
    requested = requested_backend()
    if requested == "torch" or not kernels_compute(*(getattr(t, "dtype", None) for t in tensors if t is not None)):
        return "torch"
    on_cuda = any(getattr(getattr(t, "device", None), "type", None) == "cuda" for t in tensors if t is not None)
    if requested == "auto":
        return "triton" if on_cuda and triton_import_error() is None else "torch"
    # requested == "triton"
    reason = triton_import_error()
    if reason is not None:
        raise ConfigError(f"{ENV_VAR}=triton but Triton cannot be imported ({reason}); set {ENV_VAR}=torch or auto")
    if not on_cuda and not triton_interpret():
        raise ConfigError(
            f"{ENV_VAR}=triton was requested for CPU tensors; Triton runs on CPU only in its interpreter "
            f"(set TRITON_INTERPRET=1 before importing triton), or use {ENV_VAR}=auto|torch"
        )
    return "triton"


#: dtypes the Triton kernels compute correctly (fp32 accumulation), by name so this module stays torch-free.
KERNEL_DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16")
#: Under the interpreter ``tl.dot`` of bfloat16 operands returns garbage (Triton 3.8: errors ~1e10 where fp16 and
#: fp32 are exact), so there bfloat16 is not a kernel dtype.
INTERPRETER_KERNEL_DTYPES = ("torch.float32", "torch.float16")


def kernels_compute(*dtypes: Any) -> bool:
    """True when the Triton kernels compute tensors of every one of ``dtypes`` correctly (``None`` ignored).

    float32, float16 and bfloat16 on CUDA; float32 and float16 under ``TRITON_INTERPRET=1``. Never float64 (the
    kernels' blend and ``tl.dot`` are written for 32-bit accumulation; float64 forwards came out as ~1e263 or
    NaN). Ops route other dtypes to their PyTorch path.
    """
    ok = INTERPRETER_KERNEL_DTYPES if triton_interpret() else KERNEL_DTYPES
    return all(str(d) in ok for d in dtypes if d is not None)


def backend_report() -> dict[str, str]:
    """What the dispatcher would do on this machine, for logs and bug reports.

    Returns:
        ``{"requested": ..., "triton": <version or why unavailable>, "triton_interpret": "0"|"1",
        "cuda": <device name or "unavailable">, "cuda_ops": <backend for CUDA tensors>,
        "cpu_ops": <backend for CPU tensors>}``; every value is a string.
    """
    import torch

    report: dict[str, str] = {}
    try:
        requested = requested_backend()
    except ConfigError as err:
        requested = f"invalid ({err})"
    report["requested"] = requested
    reason = triton_import_error()
    if reason is None:
        import triton

        report["triton"] = str(triton.__version__)
    else:
        report["triton"] = f"unavailable ({reason})"
    report["triton_interpret"] = "1" if triton_interpret() else "0"
    report["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unavailable"
    for key, device in (("cuda_ops", "cuda"), ("cpu_ops", "cpu")):
        try:
            report[key] = _choose_for_device(device)
        except ConfigError as err:
            report[key] = f"error ({err})"
    return report


class _FakeTensor:
    """Stands in for a tensor on a device that may not exist on this machine (only ``device`` is read)."""

    def __init__(self, device_type: str) -> None:
        self.device = type("Dev", (), {"type": device_type})()


def _choose_for_device(device_type: str) -> str:
    return choose_backend(_FakeTensor(device_type))
