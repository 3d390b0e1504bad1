"""Fast PyTorch path of the sampled convolutions (the CPU backend): batched bilinear sampling + one matmul.

For each chunk of (images, output rows) the kh·kw taps are sampled with one ``F.grid_sample`` call (zero
padding, align_corners=False, x_n = (2x + 1)/W − 1: DCN's bilinear rule with zeros outside (−1, H)×(−1, W)),
multiplied by the mask and contracted with the weight by one batched matmul. The backward recomputes the
samples chunk by chunk and calls ``aten.grid_sampler_2d_backward``, so memory stays bounded by the chunk size
instead of growing with 9× the input (issue 9).

Exactness at integer positions (e.g. every tap at initialisation, when the offsets are zero): the offset
gradient of bilinear sampling jumps at integer coordinates, and torchvision takes the floor side. The input is
zero-padded at the bottom/right to power-of-two sizes, which makes the normalisation and grid_sample's inverse
map exact for such positions, so the floor side is taken here too (also at −1, where torchvision, unlike mmcv,
keeps the gradient towards row / column 0).

Geometry: tap (i, j) of output (ho, wo) reads row ``ho·a_h + i·b_h + c_h + dy`` and column
``wo·a_w + j·b_w + c_w + dx`` (see :mod:`lsvr_ops_triton.functional`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Bytes of sampled columns one chunk may hold (forward; the backward holds about three such buffers).
CHUNK_BYTES = 64 * 2**20
#: The forward keeps its samples for the backward (saving one resampling) while they fit in this many bytes.
SAVE_BYTES = 256 * 2**20


def _base_positions(geometry: Sequence[float], kernel: Sequence[int], ho: int, wo: int) -> tuple[Tensor, Tensor]:
    """(K, Ho) rows and (K, Wo) columns of the taps before the offsets, float64, K = kh·kw row-major."""
    a_h, b_h, c_h, a_w, b_w, c_w = geometry
    kh, kw = kernel
    i = torch.arange(kh, dtype=torch.float64).repeat_interleave(kw)  # (K,) tap row index
    j = torch.arange(kw, dtype=torch.float64).repeat(kh)  # (K,) tap column index
    rows = torch.arange(ho, dtype=torch.float64)[None, :] * a_h + (i[:, None] * b_h + c_h)
    cols = torch.arange(wo, dtype=torch.float64)[None, :] * a_w + (j[:, None] * b_w + c_w)
    return rows, cols


def _chunks(n: int, ho: int, per_row_bytes: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (n0, n1, r0, r1): whole images while they fit in :data:`CHUNK_BYTES`, else row bands."""
    rows = max(1, min(ho, CHUNK_BYTES // max(1, per_row_bytes)))
    if rows < ho:
        for b in range(n):
            for r0 in range(0, ho, rows):
                yield b, b + 1, r0, min(ho, r0 + rows)
        return
    imgs = max(1, CHUNK_BYTES // max(1, per_row_bytes * ho))
    for n0 in range(0, n, imgs):
        yield n0, min(n, n0 + imgs), 0, ho


def _pow2(v: int) -> int:
    return 1 << (v - 1).bit_length()


class _Sampler:
    """Builds the sampling grid of one chunk and samples it (shared by forward and backward)."""

    def __init__(self, input: Tensor, offset: Tensor, geometry: Sequence[float], kernel: Sequence[int],
                 offset_groups: int) -> None:
        self.offset, self.og = offset, offset_groups
        self.n, self.c, self.h, self.w = input.shape
        self.hp, self.wp = _pow2(self.h), _pow2(self.w)  # padded sizes (zeros below / right: same samples)
        pad = (0, self.wp - self.w, 0, self.hp - self.h)
        self.input = F.pad(input, pad) if any(pad) else input  # (N, C, Hp, Wp)
        self.ho, self.wo = offset.shape[-2:]
        self.k = kernel[0] * kernel[1]
        rows, cols = _base_positions(geometry, kernel, self.ho, self.wo)
        # normalised base coordinates: (2p + 1)/size − 1; offsets then add 2·d/size
        self.base_y = ((2 * rows + 1) / self.hp - 1).to(input.dtype)  # (K, Ho)
        self.base_x = ((2 * cols + 1) / self.wp - 1).to(input.dtype)  # (K, Wo)

    def grid(self, n0: int, n1: int, r0: int, r1: int) -> Tensor:
        """(nb·og, K·R, Wo, 2) normalised (x, y) grid of images n0:n1, output rows r0:r1."""
        nb, r = n1 - n0, r1 - r0
        off = self.offset[n0:n1, :, r0:r1].reshape(nb, self.og, self.k, 2, r, self.wo)
        gy = self.base_y[:, r0:r1, None] + off[:, :, :, 0] * (2.0 / self.hp)  # (nb, og, K, R, Wo)
        gx = self.base_x[:, None, :] + off[:, :, :, 1] * (2.0 / self.wp)
        return torch.stack((gx, gy), dim=-1).view(nb * self.og, self.k * r, self.wo, 2)

    def chunk_input(self, n0: int, n1: int) -> Tensor:
        """(nb·og, C/og, Hp, Wp) padded input of images n0:n1, one offset group per batch entry."""
        return self.input[n0:n1].reshape((n1 - n0) * self.og, self.c // self.og, self.hp, self.wp)

    def sample(self, n0: int, n1: int, grid: Tensor) -> Tensor:
        """(nb, og, C/og, K, R·Wo) unmasked bilinear samples."""
        s = F.grid_sample(self.chunk_input(n0, n1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return s.view(n1 - n0, self.og, self.c // self.og, self.k, -1)


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def saved_samples_shape(input: Tensor, offset: Tensor, kernel: Sequence[int], offset_groups: int,
                        save: bool) -> tuple[int, ...]:
    """Shape of the samples the forward keeps: (N, og, C/og, K, Ho, Wo), or (0,) when not kept."""
    n, c = input.shape[:2]
    shape = (n, offset_groups, c // offset_groups, kernel[0] * kernel[1], *offset.shape[-2:])
    itemsize = torch.empty(0, dtype=_compute_dtype(input)).element_size()
    return shape if save and math.prod(shape) * itemsize <= SAVE_BYTES else (0,)


def sampled_conv_forward(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                         geometry: Sequence[float], kernel: Sequence[int], groups: int, offset_groups: int,
                         save_samples: bool = False) -> tuple[Tensor, Tensor]:
    """Output (N, Cout, Ho, Wo) of the sampled convolution (shapes as :func:`~lsvr_ops_triton.deform_conv2d`)
    and the unmasked samples for the backward (shape :func:`saved_samples_shape`; empty when not kept)."""
    dt = _compute_dtype(input)
    x, off, wt = input.to(dt).contiguous(), offset.to(dt), weight.to(dt)
    m = None if mask is None else mask.to(dt)
    sp = _Sampler(x, off, geometry, kernel, offset_groups)
    n, c, k, ho, wo = sp.n, sp.c, sp.k, sp.ho, sp.wo
    cout = weight.shape[0]
    w_g = wt.reshape(groups, cout // groups, (c // groups) * k)  # (g, Cout/g, Cg·K)
    out = torch.empty(n, cout, ho, wo, dtype=dt, device=input.device)
    keep_shape = saved_samples_shape(input, offset, kernel, offset_groups, save_samples)
    kept = x.new_empty(keep_shape)
    chunks = list(_chunks(n, ho, c * k * wo * x.element_size()))
    for n0, n1, r0, r1 in chunks:
        nb, r = n1 - n0, r1 - r0
        s = sp.sample(n0, n1, sp.grid(n0, n1, r0, r1))  # (nb, og, C/og, K, L)
        if kept.numel():
            if len(chunks) == 1:
                kept = s.view(keep_shape)
            else:
                kept[n0:n1, ..., r0:r1, :] = s.view(nb, offset_groups, c // offset_groups, k, r, wo)
        if m is not None:
            s = s * m[n0:n1, :, r0:r1].reshape(nb, offset_groups, 1, k, r * wo)
        cols = s.view(nb, groups, (c // groups) * k, r * wo)
        out[n0:n1, :, r0:r1] = torch.matmul(w_g, cols).view(nb, cout, r, wo)
    if bias is not None:
        out += bias.to(dt).view(1, -1, 1, 1)
    return out.to(input.dtype), kept


def sampled_conv_backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor,
                          geometry: Sequence[float], kernel: Sequence[int], groups: int, offset_groups: int,
                          needs: Sequence[bool], samples: Tensor | None = None,
                          ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients (input, offset, mask, weight) of :func:`sampled_conv_forward`; ``needs`` selects which.

    ``samples``: what the forward kept (read only), or None / empty to resample. The bias gradient is
    ``grad_out.sum((0, 2, 3))`` and is left to the caller.
    """
    need_x, need_off, need_m, need_w = needs
    need_m = need_m and mask is not None
    dt = _compute_dtype(input)
    x, off, wt, go = input.to(dt).contiguous(), offset.to(dt), weight.to(dt), grad_out.to(dt)
    m = None if mask is None else mask.to(dt)
    sp = _Sampler(x, off, geometry, kernel, offset_groups)
    n, c, h, w, k, ho, wo, og = sp.n, sp.c, sp.h, sp.w, sp.k, sp.ho, sp.wo, sp.og
    cout, cg = weight.shape[0], c // groups
    w_g = wt.reshape(groups, cout // groups, cg * k)
    g_x = torch.zeros_like(x) if need_x else None
    g_off = torch.zeros(n, og, k, 2, ho, wo, dtype=dt, device=x.device) if need_off else None
    g_m = torch.zeros(n, og, k, ho, wo, dtype=dt, device=x.device) if need_m else None
    g_w = torch.zeros_like(w_g) if need_w else None
    for n0, n1, r0, r1 in _chunks(n, ho, 3 * c * k * wo * x.element_size()):
        nb, r = n1 - n0, r1 - r0
        gout = go[n0:n1, :, r0:r1].reshape(nb, groups, cout // groups, r * wo)
        grid = sp.grid(n0, n1, r0, r1)
        fresh = samples is None or samples.numel() == 0
        s = (sp.sample(n0, n1, grid) if fresh  # (nb, og, C/og, K, L)
             else samples[n0:n1, ..., r0:r1, :].reshape(nb, og, c // og, k, r * wo))
        m_chunk = None if m is None else m[n0:n1, :, r0:r1].reshape(nb, og, 1, k, r * wo)
        g_cols = None
        if need_x or need_off or need_m:
            g_cols = torch.matmul(w_g.transpose(-1, -2), gout).view(nb, og, c // og, k, r * wo)
        if need_m:
            g_m[n0:n1, :, :, r0:r1] = (g_cols * s).sum(2).view(nb, og, k, r, wo)
        if need_w:
            cols = s if m_chunk is None else (s.mul_(m_chunk) if fresh else s * m_chunk)
            cols = cols.view(nb, groups, cg * k, r * wo)
            for b in range(nb):  # accumulate image by image: no (nb, g, Cout/g, Cg·K) temporary
                g_w.baddbmm_(gout[b], cols[b].transpose(-1, -2))
        if not (need_x or need_off):
            continue
        g_s = g_cols if m_chunk is None else g_cols.mul_(m_chunk)
        g_xs, g_grid = torch.ops.aten.grid_sampler_2d_backward(
            g_s.view(nb * og, c // og, k * r, wo), sp.chunk_input(n0, n1), grid, 0, 0, False, [need_x, need_off])
        if need_x:
            g_x[n0:n1] += g_xs.view(nb, c, sp.hp, sp.wp)[:, :, :h, :w]
        if need_off:
            g_grid = g_grid.view(nb, og, k, r, wo, 2)
            g_off[n0:n1, :, :, 0, r0:r1] = g_grid[..., 1] * (2.0 / sp.hp)
            g_off[n0:n1, :, :, 1, r0:r1] = g_grid[..., 0] * (2.0 / sp.wp)
    return (
        None if g_x is None else g_x.to(input.dtype),
        None if g_off is None else g_off.view(offset.shape).to(offset.dtype),
        None if g_m is None else g_m.view(mask.shape).to(mask.dtype),
        None if g_w is None else g_w.view(weight.shape).to(weight.dtype),
    )
