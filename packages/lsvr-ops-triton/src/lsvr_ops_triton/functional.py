"""Public deformable ops: argument checks, AMP casting and backend dispatch (see :mod:`.dispatch`).

Both ops are "sampled convolutions": for every output cell and kernel tap a position is read bilinearly from
the input (zero outside (−1, H)×(−1, W)), optionally multiplied by a mask, and contracted with the weight.
They differ only in where the taps sit before the offset is added:

* :func:`deform_conv2d`: row ``ho·stride_h − pad_h + i·dil_h + dy`` (torchvision's ``deform_conv2d``);
* :func:`pyramid_deform_conv2d`: row ``(ho − 1 + i)·s_h + dy`` (LSNet spec §2.4).

Both are written as ``pos = ho·a + i·b + c + d`` with a per-axis *geometry* ``(a, b, c)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsvr_ops_triton.dispatch import choose_backend
from lsvr_ops_triton.reference import deform_conv2d_reference, pyramid_deform_conv2d_reference


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"deform_conv2d: {name} must be an int or a pair of ints, got {value!r}")
    return pair[0], pair[1]


_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_float(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__} {t!r}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 tensor, got {t.dtype}")


def _infer_groups(cin: int, weight: Tensor, offset: Tensor, groups: int | None,
                  offset_groups: int | None) -> tuple[int, int]:
    """torchvision's inference: groups = Cin // weight.shape[1], offset groups = offset.shape[1] // (2·kh·kw)."""
    cin_g, kh, kw = weight.shape[1:]
    if groups is None:
        if cin_g < 1 or cin % cin_g:
            raise ValueError(f"deform_conv2d: weight {tuple(weight.shape)} does not fit input channels {cin}: "
                             f"Cin must be a multiple of weight.shape[1]={cin_g}")
        groups = cin // cin_g
    if offset_groups is None:
        if offset.shape[1] % (2 * kh * kw) or offset.shape[1] == 0:
            raise ValueError(f"deform_conv2d: offset must have shape (N, 2·offset_groups·kh·kw, Ho, Wo), a positive "
                             f"multiple of 2·kh·kw = {2 * kh * kw} channels; got {tuple(offset.shape)}")
        offset_groups = offset.shape[1] // (2 * kh * kw)
    return groups, offset_groups


def _autocast(device_type: str, *tensors: Tensor | None) -> list[Tensor | None]:
    """Cast the data tensors to the autocast dtype when autocast is on (offsets and masks stay as they are)."""
    if not torch.is_autocast_enabled(device_type):
        return list(tensors)
    dtype = torch.get_autocast_dtype(device_type)
    return [None if t is None else t.to(dtype) for t in tensors]


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int | None = None,
    offset_groups: int | None = None,
) -> Tensor:
    """Deformable convolution, DCN v1 (``mask=None``) or v2, with ``torchvision.ops.deform_conv2d`` semantics.

    A drop-in for torchvision's functional when ``mask``, ``stride``, ``padding`` and ``dilation`` are passed by
    keyword (the positional order after ``bias`` differs: torchvision's is stride, padding, dilation, mask):
    like torchvision, ``groups`` and ``offset_groups`` default to what the shapes imply.

    Args:
        input: (N, Cin, H, W) float32/float16/bfloat16 (Triton kernels on CUDA) or float64 (PyTorch path).
        offset: (N, 2·offset_groups·kh·kw, Ho, Wo) per-tap (dy, dx) in input pixels; channel
            ``g·2·kh·kw + 2k`` is dy and ``+ 1`` is dx of tap k = i·kw + j of offset group g.
        weight: (Cout, Cin/groups, kh, kw), same dtype as ``input``.
        bias: optional (Cout,).
        mask: optional (N, offset_groups·kh·kw, Ho, Wo) modulation (DCN v2), usually a sigmoid output.
        stride, padding, dilation: ints or (h, w) pairs, pixels.
        groups: convolution groups (Cin and Cout divisible by it); None: ``Cin // weight.shape[1]``, as
            torchvision infers it.
        offset_groups: channel groups sharing one set of offsets (Cin divisible by it); None:
            ``offset.shape[1] // (2·kh·kw)``, as torchvision infers it.
    Returns:
        (N, Cout, Ho, Wo) with Ho = (H + 2·pad_h − dil_h·(kh − 1) − 1)//stride_h + 1, dtype of ``input``.
    Sampling: tap (i, j) of output (ho, wo) reads (ho·stride_h − pad_h + i·dil_h + dy,
    wo·stride_w − pad_w + j·dil_w + dx), bilinear, 0 outside (−1, H)×(−1, W); fp32 accumulation (float64 for
    float64 tensors, which never reach the Triton kernels: see :func:`.dispatch.kernels_compute`).
    Raises:
        ValueError: shapes inconsistent with each other or with groups/offset_groups.
        TypeError: tensors that are not float16/bfloat16/float32/float64, input and weight dtypes differ
            (outside autocast), or ``mask`` is not a tensor (a torchvision-order positional ``stride``).
        ConfigError: ``LSVR_KERNEL_BACKEND`` is invalid or cannot be honoured.
    Source: LSNet spec §9 item 1 (DCNv2 in the head towers and backbone).
    """
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        _check_float(name, t)
        if t.dim() != 4:
            raise ValueError(f"deform_conv2d: {name} must be 4-D, got shape {tuple(t.shape)}")
    if mask is not None and not isinstance(mask, Tensor):
        raise TypeError(f"deform_conv2d: mask must be a tensor or None, got {mask!r}; lsvr's positional order after "
                        f"bias is (mask, stride, padding, dilation), torchvision's (stride, padding, dilation, mask): "
                        f"pass them by keyword")
    n, cin, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    groups, offset_groups = _infer_groups(cin, weight, offset, groups, offset_groups)
    if groups < 1 or cin % groups or cout % groups or cin_g * groups != cin:
        raise ValueError(f"deform_conv2d: weight {tuple(weight.shape)} does not fit input channels {cin} "
                         f"with groups={groups}")
    if offset_groups < 1 or cin % offset_groups:
        raise ValueError(f"deform_conv2d: input channels {cin} not divisible by offset_groups={offset_groups}")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"deform_conv2d: need stride, dilation >= 1 and padding >= 0, got {stride}, "
                         f"{dilation}, {padding}")
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"deform_conv2d: input {h}x{w} too small for kernel {kh}x{kw}")
    want = (n, 2 * offset_groups * kh * kw, ho, wo)
    if tuple(offset.shape) != want:
        raise ValueError(f"deform_conv2d: offset must have shape {want}, got {tuple(offset.shape)}")
    if mask is not None:
        _check_float("mask", mask)
        want_m = (n, offset_groups * kh * kw, ho, wo)
        if tuple(mask.shape) != want_m:
            raise ValueError(f"deform_conv2d: mask must have shape {want_m}, got {tuple(mask.shape)}")
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"deform_conv2d: bias must have shape ({cout},), got {tuple(bias.shape)}")
    device_type = input.device.type
    input, weight, bias = _autocast(device_type, input, weight, bias)
    if input.dtype != weight.dtype:
        raise TypeError(f"deform_conv2d: input ({input.dtype}) and weight ({weight.dtype}) dtypes differ")
    geometry = [float(sh), float(dh), float(-ph), float(sw), float(dw), float(-pw)]
    backend = choose_backend(input, offset, weight, mask, bias)
    with torch.autocast(device_type, enabled=False):
        if backend == "triton":
            from lsvr_ops_triton import custom_ops

            return custom_ops.sampled_conv_triton(input, offset, mask, weight, bias, geometry, [kh, kw], groups,
                                                  offset_groups)
        if device_type == "cpu":
            from lsvr_ops_triton import custom_ops

            return custom_ops.sampled_conv_torch(input, offset, mask, weight, bias, geometry, [kh, kw], groups,
                                                 offset_groups)
        return deform_conv2d_reference(input, offset, weight, bias, mask, (sh, sw), (ph, pw), (dh, dw))


def pyramid_deform_conv2d(
    feature: Tensor, offset: Tensor, weight: Tensor, scale_hw: Sequence[float], bias: Tensor | None = None
) -> Tensor:
    """LSNet's PyramidDeformConv: 3×3 DCN v1 sampling of an adjacent pyramid level at base-level offsets.

    Args:
        feature: (N, C, H', W') features of the sampled level l', float32/float16/bfloat16 (Triton kernels on
            CUDA) or float64 (PyTorch path).
        offset: (N, 18, H, W) per-tap (dy, dx) in level-l' pixels (already multiplied by the scales by the
            caller); channel 2k = dy, 2k + 1 = dx of tap k = 3i + j.
        weight: (Cout, C, 3, 3), same dtype as ``feature``.
        scale_hw: (s_h, s_w) = (H'/H, W'/W), the ratio of actual feature sizes (e.g. 13/25).
        bias: optional (Cout,) (LSNet uses none).
    Returns:
        (N, Cout, H, W): the output has the **offset's** spatial size.
    Sampling: tap (i, j) of output (h, w) reads row (h − 1 + i)·s_h + dy, column (w − 1 + j)·s_w + dx of the
    feature, bilinear, 0 unless −1 < row < H' and −1 < col < W'; fp32 accumulation.
    Raises:
        ValueError, TypeError, ConfigError: as :func:`deform_conv2d`.
    Source: LSNet spec §2.4 and §9 item 2.
    """
    for name, t in (("feature", feature), ("offset", offset), ("weight", weight)):
        _check_float(name, t)
        if t.dim() != 4:
            raise ValueError(f"pyramid_deform_conv2d: {name} must be 4-D, got shape {tuple(t.shape)}")
    n, c = feature.shape[:2]
    if offset.shape[0] != n or offset.shape[1] != 18:
        raise ValueError(f"pyramid_deform_conv2d: offset must have shape ({n}, 18, H, W), got {tuple(offset.shape)}")
    if tuple(weight.shape[1:]) != (c, 3, 3):
        raise ValueError(f"pyramid_deform_conv2d: weight must have shape (Cout, {c}, 3, 3), got "
                         f"{tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"pyramid_deform_conv2d: bias must have shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    s_h, s_w = (float(s) for s in scale_hw)
    device_type = feature.device.type
    feature, weight, bias = _autocast(device_type, feature, weight, bias)
    if feature.dtype != weight.dtype:
        raise TypeError(f"pyramid_deform_conv2d: feature ({feature.dtype}) and weight ({weight.dtype}) dtypes differ")
    geometry = [s_h, s_h, -s_h, s_w, s_w, -s_w]
    backend = choose_backend(feature, offset, weight, bias)
    with torch.autocast(device_type, enabled=False):
        if backend == "triton":
            from lsvr_ops_triton import custom_ops

            return custom_ops.sampled_conv_triton(feature, offset, None, weight, bias, geometry, [3, 3], 1, 1)
        if device_type == "cpu":
            from lsvr_ops_triton import custom_ops

            return custom_ops.sampled_conv_torch(feature, offset, None, weight, bias, geometry, [3, 3], 1, 1)
        return pyramid_deform_conv2d_reference(feature, offset.to(feature.dtype), weight, (s_h, s_w), bias)
