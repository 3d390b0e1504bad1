"""Write an exported model: ``torch.export`` (pt2) or ONNX (``torch.onnx.export(dynamo=True)``).

pt2 keeps lsvr's ``torch.library`` custom ops (``lsvr_ops::*``, traced through their fake kernels); loading
the file needs the plugin that registers them installed (``lsvr predict --engine pt2`` loads the plugins).
ONNX is traced with ``LSVR_KERNEL_BACKEND=reference``: the deformable and attention ops then run as their
pure-PyTorch references (grid_sample + matmul, matmul + softmax), which export to standard ONNX operators
(GridSample, MatMul, Softmax), so the file runs on any ONNX runtime without custom operators.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.errors import ConfigError, LsvrError
from lsvr_core.export.module import POSTPROCESS_INPUTS
from lsvr_core.export.postprocess import allow_small_nms_outputs

DEFAULT_OPSET = 18


@contextlib.contextmanager
def reference_kernels() -> Iterator[None]:
    """Run kernel plugins on their pure-PyTorch references while tracing (``LSVR_KERNEL_BACKEND=reference``)."""
    old = os.environ.get("LSVR_KERNEL_BACKEND")
    os.environ["LSVR_KERNEL_BACKEND"] = "reference"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LSVR_KERNEL_BACKEND", None)
        else:
            os.environ["LSVR_KERNEL_BACKEND"] = old


def dynamic_spec(dynamic: bool, size_divisor: int) -> dict[str, Any] | None:
    """``dynamic_shapes`` for ``images``: batch, and H, W as multiples of the size divisor, when ``dynamic``."""
    if not dynamic:
        return None
    from torch.export import Dim

    return {"images": {0: Dim("batch", min=1, max=64), 2: size_divisor * Dim("h_blocks", min=1, max=64),
                       3: size_divisor * Dim("w_blocks", min=1, max=64)}}


def _blocked(err: Exception) -> LsvrError:
    text = str(err).strip().splitlines()
    head = next((line for line in text if line.strip()), type(err).__name__)
    ops = sorted({w.strip("`'\",.():") for line in text for w in line.split() if "::" in w and "." in w})[:3]
    where = f" (blocking op: {', '.join(ops)})" if ops else ""
    return LsvrError(f"export failed{where}: {type(err).__name__}: {head[:300]}")


def export_pt2(module: nn.Module, inputs: tuple[Tensor, ...], path: Path,
               dynamic_shapes: dict[str, Any] | None) -> Path:
    """``torch.export.export`` + ``torch.export.save``; returns ``path``.

    Raises:
        LsvrError: tracing failed (the message names the blocking op when torch does).
    """
    allow_small_nms_outputs()
    try:
        program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as err:  # torch raises many types; the user gets one line naming the cause
        raise _blocked(err) from err
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def export_onnx(module: nn.Module, inputs: tuple[Tensor, ...], path: Path, dynamic_shapes: dict[str, Any] | None,
                output_names: list[str], opset: int = DEFAULT_OPSET) -> Path:
    """Dynamo-based ONNX export with reference kernels, checked with ``onnx.checker``; returns ``path``.

    Raises:
        ConfigError: onnx / onnxscript are not installed (``pip install lsvr-core[export]``).
        LsvrError: tracing or conversion failed (the message names the blocking op when known).
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError as err:
        raise ConfigError(f"--format onnx needs onnx and onnxscript ({err.name} is missing): "
                          "pip install lsvr-core[export]") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    allow_small_nms_outputs()
    try:
        with reference_kernels():
            program = torch.onnx.export(module, inputs, dynamo=True, opset_version=opset,
                                        input_names=list(POSTPROCESS_INPUTS[:len(inputs)]),
                                        output_names=output_names, dynamic_shapes=dynamic_shapes,
                                        verbose=False)
        program.save(str(path))
    except Exception as err:
        raise _blocked(err) from err
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise _unsupported_in_opset(err, opset) from err
    return path


def _unsupported_in_opset(err: Exception, opset: int) -> LsvrError:
    """One line for a graph the ONNX checker rejects, with the op and an ``--opset`` hint when an op is newer
    than ``opset`` (e.g. torchvision's ``deform_conv2d`` becomes ``DeformConv``, ONNX opset 19)."""
    text = str(err).strip().splitlines()[0]
    found = re.search(r"No Op registered for (\w+) with domain_version of (\d+)", text)
    if found:
        return LsvrError(f"export failed (blocking op: ONNX {found[1]}): it is not in ONNX opset {found[2]}; pass a "
                         f"newer --opset (DeformConv, from torchvision::deform_conv2d, needs 19)")
    return LsvrError(f"export failed: the ONNX checker rejects the graph (opset {opset}): {text[:300]}")
