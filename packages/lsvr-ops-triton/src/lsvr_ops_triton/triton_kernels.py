"""Triton kernels of the sampled convolution (deformable conv and pyramid deformable conv), implicit GEMM.

Layouts (prepared by :mod:`.triton_sampled_conv`): input ``x`` channels-last (N, H, W, C) so that the C
values of one sampling corner are contiguous; weight ``w`` as (groups, K, Cg, Cout_g); offset (N, OG·K·2, Ho,
Wo), mask (N, OG·K, Ho, Wo) and output / grad_out (N, Cout, Ho, Wo) as given. ``L = Ho·Wo``; pixel p = ho·Wo +
wo. Tap k = i·KW + j samples row ``ho·a_h + i·b_h + c_h + dy`` and column ``wo·a_w + j·b_w + c_w + dx``.

Each program gathers a (BLOCK_P pixels × BLOCK_C channels) tile of bilinear samples into registers (fp32
weights, zero outside (−1, H)×(−1, W), corner rule of torchvision's ``bilinear_interpolate``) and feeds it
to ``tl.dot`` with a weight tile; accumulation is fp32. ``OG_UNIFORM`` (compile-time) says every channel
block lies inside one offset group, so positions are computed once per pixel instead of per (pixel, channel).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _positions(off_ptr, mask_ptr, n, p, pmask, ho, wo, k, c_glob, cmask, c_first, OG, Cog, L,
               a_h, b_h, c_h, a_w, b_w, c_w, KW: tl.constexpr, K: tl.constexpr, HAS_MASK: tl.constexpr,
               OG_UNIFORM: tl.constexpr):
    """Sampling rows/cols (BP, 1) or (BP, BC) fp32 and the mask (same shape, 1.0 without mask)."""
    i = k // KW
    j = k % KW
    by = (ho * a_h + (i * b_h + c_h)).to(tl.float32)
    bx = (wo * a_w + (j * b_w + c_w)).to(tl.float32)
    if OG_UNIFORM:
        og = c_first // Cog
        och = ((n * OG + og) * K + k).to(tl.int64)  # (BP,) or scalar channel of (offset pair / mask)
        dy = tl.load(off_ptr + (2 * och) * L + p, mask=pmask, other=0.0).to(tl.float32)
        dx = tl.load(off_ptr + (2 * och + 1) * L + p, mask=pmask, other=0.0).to(tl.float32)
        y = (by + dy)[:, None]
        x = (bx + dx)[:, None]
        if HAS_MASK:
            m = tl.load(mask_ptr + och * L + p, mask=pmask, other=0.0).to(tl.float32)[:, None]
        else:
            m = tl.full((1, 1), 1.0, tl.float32)
    else:
        og = c_glob // Cog  # (BC,)
        och = ((n[:, None] * OG + og[None, :]) * K + k).to(tl.int64)  # (BP, BC)
        lm = pmask[:, None] & cmask[None, :]
        dy = tl.load(off_ptr + (2 * och) * L + p[:, None], mask=lm, other=0.0).to(tl.float32)
        dx = tl.load(off_ptr + (2 * och + 1) * L + p[:, None], mask=lm, other=0.0).to(tl.float32)
        y = by[:, None] + dy
        x = bx[:, None] + dx
        if HAS_MASK:
            m = tl.load(mask_ptr + och * L + p[:, None], mask=lm, other=0.0).to(tl.float32)
        else:
            m = tl.full((1, 1), 1.0, tl.float32)
    return y, x, m


@triton.jit
def _corners(y, x, H, W):
    """Corner indices, bilinear fractions and validity of positions (any shape).

    No separate inside test: a sample outside (−1, H)×(−1, W) has only invalid corners, so its value and
    gradients are 0, and at exactly −1 the gradient towards row / column 0 is kept, as in torchvision. Clamping
    to [−2, size + 1] only keeps ``floor`` in int32 range (all corners out there are invalid anyway).
    """
    y = tl.minimum(tl.maximum(y, -2.0), H + 1.0)
    x = tl.minimum(tl.maximum(x, -2.0), W + 1.0)
    y0f = tl.floor(y)
    x0f = tl.floor(x)
    ly = y - y0f
    lx = x - x0f
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    vy0 = (y0 >= 0) & (y0 < H)
    vy1 = (y0 >= -1) & (y0 < H - 1)
    vx0 = (x0 >= 0) & (x0 < W)
    vx1 = (x0 >= -1) & (x0 < W - 1)
    return y0, x0, ly, lx, vy0, vy1, vx0, vx1


@triton.jit
def _gather(x_ptr, x_base, y0, x0, dy: tl.constexpr, dx: tl.constexpr, valid, c, W, C):
    """Values of corner (y0 + dy, x0 + dx) for channels ``c`` (1, BC); 0 where not valid."""
    yy = tl.where(valid, y0 + dy, 0)
    xx = tl.where(valid, x0 + dx, 0)
    addr = x_base + ((yy * W + xx).to(tl.int64) * C) + c
    return tl.load(x_ptr + addr, mask=valid, other=0.0).to(tl.float32)


@triton.jit
def _sample(x_ptr, x_base, y, x, c, cmask, pmask, H, W, C):
    """(BP, BC) fp32 bilinear samples at (y, x) of channels ``c`` (zero outside the map)."""
    y0, x0, ly, lx, vy0, vy1, vx0, vx1 = _corners(y, x, H, W)
    lm = pmask[:, None] & cmask[None, :]
    cc = c[None, :]
    hy = 1.0 - ly
    hx = 1.0 - lx
    val = hy * hx * _gather(x_ptr, x_base, y0, x0, 0, 0, lm & vy0 & vx0, cc, W, C)
    val += hy * lx * _gather(x_ptr, x_base, y0, x0, 0, 1, lm & vy0 & vx1, cc, W, C)
    val += ly * hx * _gather(x_ptr, x_base, y0, x0, 1, 0, lm & vy1 & vx0, cc, W, C)
    val += ly * lx * _gather(x_ptr, x_base, y0, x0, 1, 1, lm & vy1 & vx1, cc, W, C)
    return val


@triton.jit
def sampled_conv_fwd_kernel(
    x_ptr, off_ptr, mask_ptr, w_ptr, b_ptr, out_ptr,
    C, H, W, Cout, Wo, L, Cg, Cout_g, OG, Cog,
    a_h, b_h, c_h, a_w, b_w, c_w,
    KW: tl.constexpr, K: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
    OG_UNIFORM: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """out[n, g·Cout_g + co, p] = Σ_k Σ_c w[g, k, c, co] · mask · x(n, g·Cg + c, pos_k(p)) (+ bias)."""
    pid_p = tl.program_id(0)
    pid_co = tl.program_id(1)
    num_pb = tl.cdiv(L, BLOCK_P)
    n = pid_p // num_pb
    co_blocks = tl.cdiv(Cout_g, BLOCK_CO)
    g = pid_co // co_blocks
    p = (pid_p % num_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < L
    ho = p // Wo
    wo = p % Wo
    co = (pid_co % co_blocks) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    comask = co < Cout_g
    x_base = n.to(tl.int64) * H * W * C
    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    for k in range(K):
        for c0 in range(0, Cg, BLOCK_C):
            c_loc = c0 + tl.arange(0, BLOCK_C)
            cmask = c_loc < Cg
            c_glob = g * Cg + c_loc
            y, x, m = _positions(off_ptr, mask_ptr, n, p, pmask, ho, wo, k, c_glob, cmask, g * Cg + c0, OG, Cog, L,
                                 a_h, b_h, c_h, a_w, b_w, c_w, KW, K, HAS_MASK, OG_UNIFORM)
            val = _sample(x_ptr, x_base, y, x, c_glob, cmask, pmask, H, W, C)
            if HAS_MASK:
                val = val * m
            w_off = ((g * K + k) * Cg + c_loc[:, None]).to(tl.int64) * Cout_g + co[None, :]
            wt = tl.load(w_ptr + w_off, mask=cmask[:, None] & comask[None, :], other=0.0)
            acc = tl.dot(val.to(wt.dtype), wt, acc, input_precision=DOT_PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * Cout_g + co, mask=comask, other=0.0).to(tl.float32)[None, :]
    out_off = (n * Cout + g * Cout_g + co[None, :]).to(tl.int64) * L + p[:, None]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & comask[None, :])


@triton.jit
def sampled_conv_bwd_data_kernel(
    x_ptr, off_ptr, mask_ptr, w_ptr, gout_ptr, gx_ptr, goff_ptr, gmask_ptr,
    C, H, W, Cout, Wo, L, Cg, Cout_g, OG, Cog,
    a_h, b_h, c_h, a_w, b_w, c_w,
    KW: tl.constexpr, K: tl.constexpr, HAS_MASK: tl.constexpr, OG_UNIFORM: tl.constexpr,
    NEED_X: tl.constexpr, NEED_OFF: tl.constexpr, NEED_MASK: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """Gradients of input (atomic scatter into fp32 channels-last ``gx``), offset and mask (fp32 atomics).

    gcol[p, c] = Σ_co grad_out[n, co, p] · w[g, k, c, co] for each tap k, then
    grad_mask = Σ_c gcol · sample, grad_pos = Σ_c gcol · mask · ∂sample/∂pos and
    grad_x[corner] += gcol · mask · w_corner.
    """
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    num_pb = tl.cdiv(L, BLOCK_P)
    n = pid_p // num_pb
    c_blocks = tl.cdiv(Cg, BLOCK_C)
    g = pid_c // c_blocks
    p = (pid_p % num_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < L
    ho = p // Wo
    wo = p % Wo
    c_loc = (pid_c % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c_loc < Cg
    c_glob = g * Cg + c_loc
    c_first = g * Cg + (pid_c % c_blocks) * BLOCK_C
    x_base = n.to(tl.int64) * H * W * C
    lm = pmask[:, None] & cmask[None, :]
    for k in range(K):
        gcol = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for co0 in range(0, Cout_g, BLOCK_CO):
            co = co0 + tl.arange(0, BLOCK_CO)
            comask = co < Cout_g
            go_off = (n * Cout + g * Cout_g + co[None, :]).to(tl.int64) * L + p[:, None]
            go = tl.load(gout_ptr + go_off, mask=pmask[:, None] & comask[None, :], other=0.0)
            w_off = ((g * K + k) * Cg + c_loc[None, :]).to(tl.int64) * Cout_g + co[:, None]
            wt = tl.load(w_ptr + w_off, mask=comask[:, None] & cmask[None, :], other=0.0)  # (BCO, BC)
            gcol = tl.dot(go, wt, gcol, input_precision=DOT_PRECISION)
        y, x, m = _positions(off_ptr, mask_ptr, n, p, pmask, ho, wo, k, c_glob, cmask, c_first, OG, Cog, L,
                             a_h, b_h, c_h, a_w, b_w, c_w, KW, K, HAS_MASK, OG_UNIFORM)
        y0, x0, ly, lx, vy0, vy1, vx0, vx1 = _corners(y, x, H, W)
        hy = 1.0 - ly
        hx = 1.0 - lx
        cc = c_glob[None, :]
        if OG_UNIFORM:
            och = ((n * OG + c_first // Cog) * K + k).to(tl.int64)  # scalar channel of the (dy, dx) pair / mask
        else:
            och = ((n * OG + cc // Cog) * K + k).to(tl.int64)  # (1, BC)
        if NEED_OFF or NEED_MASK:
            # corners one at a time: accumulate the sample and its y / x derivatives (fewer live registers)
            v = _gather(x_ptr, x_base, y0, x0, 0, 0, lm & vy0 & vx0, cc, W, C)
            val = hy * hx * v
            d_y = -hx * v
            d_x = -hy * v
            v = _gather(x_ptr, x_base, y0, x0, 0, 1, lm & vy0 & vx1, cc, W, C)
            val += hy * lx * v
            d_y -= lx * v
            d_x += hy * v
            v = _gather(x_ptr, x_base, y0, x0, 1, 0, lm & vy1 & vx0, cc, W, C)
            val += ly * hx * v
            d_y += hx * v
            d_x -= ly * v
            v = _gather(x_ptr, x_base, y0, x0, 1, 1, lm & vy1 & vx1, cc, W, C)
            val += ly * lx * v
            d_y += lx * v
            d_x += ly * v
            if NEED_MASK:
                if OG_UNIFORM:
                    tl.atomic_add(gmask_ptr + och * L + p, tl.sum(gcol * val, axis=1), mask=pmask)
                else:
                    tl.atomic_add(gmask_ptr + och * L + p[:, None], gcol * val, mask=lm)
        if HAS_MASK:
            gcol = gcol * m
        if NEED_OFF:
            if OG_UNIFORM:
                tl.atomic_add(goff_ptr + (2 * och) * L + p, tl.sum(gcol * d_y, axis=1), mask=pmask)
                tl.atomic_add(goff_ptr + (2 * och + 1) * L + p, tl.sum(gcol * d_x, axis=1), mask=pmask)
            else:
                tl.atomic_add(goff_ptr + (2 * och) * L + p[:, None], gcol * d_y, mask=lm)
                tl.atomic_add(goff_ptr + (2 * och + 1) * L + p[:, None], gcol * d_x, mask=lm)
        if NEED_X:
            _scatter(gx_ptr, x_base, y0, x0, 0, 0, lm & vy0 & vx0, cc, W, C, gcol * hy * hx)
            _scatter(gx_ptr, x_base, y0, x0, 0, 1, lm & vy0 & vx1, cc, W, C, gcol * hy * lx)
            _scatter(gx_ptr, x_base, y0, x0, 1, 0, lm & vy1 & vx0, cc, W, C, gcol * ly * hx)
            _scatter(gx_ptr, x_base, y0, x0, 1, 1, lm & vy1 & vx1, cc, W, C, gcol * ly * lx)


@triton.jit
def _scatter(gx_ptr, x_base, y0, x0, dy: tl.constexpr, dx: tl.constexpr, valid, c, W, C, value):
    yy = tl.where(valid, y0 + dy, 0)
    xx = tl.where(valid, x0 + dx, 0)
    addr = x_base + ((yy * W + xx).to(tl.int64) * C) + c
    tl.atomic_add(gx_ptr + addr, value, mask=valid)


@triton.jit
def sampled_conv_bwd_weight_kernel(
    x_ptr, off_ptr, mask_ptr, gout_ptr, gw_ptr,
    C, H, W, Cout, Wo, L, NL, Cg, Cout_g, OG, Cog, splits,
    a_h, b_h, c_h, a_w, b_w, c_w,
    KW: tl.constexpr, K: tl.constexpr, HAS_MASK: tl.constexpr, OG_UNIFORM: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """grad_w[g, k, c, co] += Σ_(n, p) in this split (mask · sample)[p, c] · grad_out[n, co, p] (fp32 atomics).

    Grid: (groups · c-blocks · co-blocks, K, splits); split s covers flat pixels [s·pps, (s + 1)·pps) of N·L,
    pps = ⌈N·L / splits⌉ rounded up to BLOCK_P.
    """
    pid_t = tl.program_id(0)
    k = tl.program_id(1)
    pid_s = tl.program_id(2)
    c_blocks = tl.cdiv(Cg, BLOCK_C)
    co_blocks = tl.cdiv(Cout_g, BLOCK_CO)
    g = pid_t // (c_blocks * co_blocks)
    cb = (pid_t // co_blocks) % c_blocks
    c_loc = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c_loc < Cg
    c_glob = g * Cg + c_loc
    co = (pid_t % co_blocks) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    comask = co < Cout_g
    acc = tl.zeros((BLOCK_C, BLOCK_CO), dtype=tl.float32)
    pps = tl.cdiv(tl.cdiv(NL, splits), BLOCK_P) * BLOCK_P
    start = pid_s * pps
    end = tl.minimum(start + pps, NL)
    for q0 in range(start, end, BLOCK_P):
        q = q0 + tl.arange(0, BLOCK_P)
        pmask = q < end
        n = q // L
        p = q % L
        ho = p // Wo
        wo = p % Wo
        y, x, m = _positions(off_ptr, mask_ptr, n, p, pmask, ho, wo, k, c_glob, cmask, g * Cg + cb * BLOCK_C, OG,
                             Cog, L, a_h, b_h, c_h, a_w, b_w, c_w, KW, K, HAS_MASK, OG_UNIFORM)
        x_base = (n.to(tl.int64) * H * W * C)[:, None]
        val = _sample(x_ptr, x_base, y, x, c_glob, cmask, pmask, H, W, C)
        if HAS_MASK:
            val = val * m
        go_off = (n[:, None] * Cout + g * Cout_g + co[None, :]).to(tl.int64) * L + p[:, None]
        go = tl.load(gout_ptr + go_off, mask=pmask[:, None] & comask[None, :], other=0.0)
        acc = tl.dot(tl.trans(val.to(go.dtype)), go, acc, input_precision=DOT_PRECISION)
    gw_off = ((g * K + k) * Cg + c_loc[:, None]).to(tl.int64) * Cout_g + co[None, :]
    tl.atomic_add(gw_ptr + gw_off, acc, mask=cmask[:, None] & comask[None, :])
