"""GPTQ written from the paper (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", 2022, Algorithm 1) with the conventions the GPTQ checkpoint
tools use, as an independent reference for sllm's src/quantize/gptq.cpp.

For a Linear with weight W [out, in] and calibration inputs X [in, N] the objective is
||W X - Q X||^2 = N/2 * tr((W - Q) H (W - Q)^T) with H = 2/N X X^T.

  1. dead inputs (H_ii = 0) get H_ii = 1 and W[:, i] = 0;
  2. act-order (optional): columns in decreasing H_ii;
  3. dampening: H += damp * mean(diag H) * I;
  4. U = upper Cholesky factor of H^-1 (the rows of U are the error-feedback directions);
  5. columns are quantized left to right in blocks of 128: q = Q(w_j), e = (w_j - q) / U_jj,
     the block's remaining columns get w -= e U_j,, and after the block the columns to its right
     get the whole block's errors at once (lazy batch update, the same result as updating every
     column at every step);
  6. group-wise quantizer: when a column starts a group (every group_size columns of the
     processing order), the group's per-row scale and zero come from the group's current
     (already updated) columns; with static groups they come from the original weight.

The quantizer is the asymmetric / symmetric min-max one of the GPTQ code base: the range always
includes 0, a row of zeros gets [-1, 1], zero = round(-min / scale) (symmetric: 2^(bits-1)), and
the scale is rounded to fp16 before the codes are computed because the checkpoint stores fp16.
"""

from __future__ import annotations

import torch


def group_params(x: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (scale, zero) of x [out, cols]."""
    maxq = 2**bits - 1
    lo = torch.clamp(x.min(dim=1).values, max=0.0)
    hi = torch.clamp(x.max(dim=1).values, min=0.0)
    if sym:
        hi = torch.maximum(lo.abs(), hi)
        lo = torch.where(lo < 0, -hi, lo)
    empty = (lo == 0) & (hi == 0)
    lo = torch.where(empty, torch.full_like(lo, -1.0), lo)
    hi = torch.where(empty, torch.full_like(hi, 1.0), hi)
    scale = ((hi - lo) / maxq).half().float().clamp(min=2.0**-24)
    if sym:
        zero = torch.full_like(scale, float(2 ** (bits - 1)))
    else:
        zero = torch.round(-lo / scale).clamp(0, maxq)
    return scale, zero


def quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes of x [out] (or [out, cols] with [out, 1] parameters)."""
    return torch.clamp(torch.round(x / scale) + zero, 0, 2**bits - 1)


def rtn(w: torch.Tensor, bits: int, group_size: int, sym: bool):
    """Round to nearest, group-wise along the input axis: (codes, scales, zeros) [out, in/groups]."""
    out, n = w.shape
    gs = n if group_size <= 0 else group_size
    codes, scales, zeros = [], [], []
    for g0 in range(0, n, gs):
        s, z = group_params(w[:, g0 : g0 + gs], bits, sym)
        codes.append(quantize(w[:, g0 : g0 + gs], s[:, None], z[:, None], bits))
        scales.append(s)
        zeros.append(z)
    return torch.cat(codes, 1), torch.stack(scales, 1), torch.stack(zeros, 1)


def dequantize(codes, scales, zeros, group_size: int, g_idx: torch.Tensor | None = None):
    n = codes.shape[1]
    gs = n if group_size <= 0 else group_size
    g = g_idx.long() if g_idx is not None else torch.arange(n) // gs
    return (codes - zeros[:, g]) * scales[:, g]


def gptq(
    w: torch.Tensor,
    h: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    sym: bool = False,
    act_order: bool = False,
    static_groups: bool = False,
    damp: float = 0.01,
    block: int = 128,
):
    """Returns (codes [out, in] in the original column order, scales, zeros [out, groups],
    g_idx [in] or None). w, h: fp32; the sweep runs in fp32 as the GPU implementations do, the
    factorisation in fp64."""
    w = w.float().clone()
    h = h.float().clone()
    out, n = w.shape
    gs = n if group_size <= 0 else group_size
    groups = (n + gs - 1) // gs

    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    static = []
    if static_groups:
        static = [group_params(w[:, g * gs : (g + 1) * gs], bits, sym) for g in range(groups)]

    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
        w = w[:, perm]
        h = h[perm][:, perm]

    hd = h.double()
    hd += damp * torch.mean(torch.diag(hd)) * torch.eye(n, dtype=torch.float64)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(hd))
    u = torch.linalg.cholesky(hinv, upper=True).float()

    codes = torch.zeros_like(w)
    scales = torch.zeros(out, groups)
    zeros = torch.zeros(out, groups)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        for i in range(i2 - i1):
            col = i1 + i
            if static_groups:
                orig = perm[col].item() if perm is not None else col
                s, z = static[orig // gs]
            elif col % gs == 0:
                current = torch.cat([w1[:, i:], w[:, i2:]], 1)[:, :gs]
                s, z = group_params(current, bits, sym)
                scales[:, col // gs] = s
                zeros[:, col // gs] = z
            q = quantize(w1[:, i], s, z, bits)
            codes[:, col] = q
            e = (w1[:, i] - (q - z) * s) / u[col, col]
            w1[:, i:] -= e[:, None] * u[col, col:i2][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]

    if static_groups:
        for g, (s, z) in enumerate(static):
            scales[:, g] = s
            zeros[:, g] = z
    g_idx = None
    if perm is not None:
        inv = torch.argsort(perm)
        codes = codes[:, inv]
        if not static_groups:
            g_idx = (torch.arange(n) // gs)[inv].int()
    return codes, scales, zeros, g_idx


def layer_loss(w: torch.Tensor, wq: torch.Tensor, h: torch.Tensor, tokens: int) -> float:
    """||W X - Wq X||^2 over the calibration tokens, from H = 2/N X X^T."""
    d = (w.double() - wq.double())
    return float(tokens / 2.0 * torch.einsum("oi,ij,oj->", d, h.double(), d))
