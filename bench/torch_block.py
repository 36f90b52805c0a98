#!/usr/bin/env python3
"""PyTorch side of `cogvideox bench` (issue 9): the same work as the C bench, timed in the same run.

    torch_block.py block --tokens N      one CogVideoX-2b transformer block (diffusers 0.30.3 CogVideoXBlock:
                                         LayerNormZero modulation, joint text+video attention with per-head q/k
                                         LayerNorm, gated residuals, tanh-GELU feed-forward) at D = 1920,
                                         30 heads x 64, FF = 7680, 226 text + N video tokens, CFG batch 2
    torch_block.py gemm --m M --k K --n N        torch.matmul(x[M,K], W[K,N])
    torch_block.py attention --tokens L --heads H --head-dim D      batch 2 self-attention
common: --threads T  --repeat R (best and median)  --precision bf16|fp32

Prints exactly one JSON object on stdout: seconds (best), seconds_median, gflops, torch_version, precision.
Random weights; FLOPs are counted as in the C bench (multiply-add = 2; the block's modulation linears are not
counted). Attention uses F.scaled_dot_product_attention where this torch has it, else softmax(QK^T)V with the
scores materialised per (batch, head, block of query rows) -- torch 1.13 has no fused attention, and all L x L
scores of a full-length block at once would not fit in memory.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, D=1920, heads=30, ff=7680, temb=512):
        super().__init__()
        self.heads, self.D = heads, D
        self.norm1_lin = torch.nn.Linear(temb, 6 * D)
        self.norm1 = torch.nn.LayerNorm(D, eps=1e-5)
        self.q, self.k, self.v = (torch.nn.Linear(D, D) for _ in range(3))
        self.norm_q = torch.nn.LayerNorm(D // heads, eps=1e-6)
        self.norm_k = torch.nn.LayerNorm(D // heads, eps=1e-6)
        self.out = torch.nn.Linear(D, D)
        self.norm2_lin = torch.nn.Linear(temb, 6 * D)
        self.norm2 = torch.nn.LayerNorm(D, eps=1e-5)
        self.ff1 = torch.nn.Linear(D, ff)
        self.ff2 = torch.nn.Linear(ff, D)

    def modulate(self, lin, norm, x, enc, temb):
        shift, scale, gate, eshift, escale, egate = lin(F.silu(temb)).chunk(6, dim=1)
        x = norm(x) * (1 + scale)[:, None] + shift[:, None]
        enc = norm(enc) * (1 + escale)[:, None] + eshift[:, None]
        return x, enc, gate[:, None], egate[:, None]

    def attention(self, h):
        B, S, D = h.shape
        H, Dh = self.heads, D // self.heads
        q = self.norm_q(self.q(h).view(B, S, H, Dh).transpose(1, 2))
        k = self.norm_k(self.k(h).view(B, S, H, Dh).transpose(1, 2))
        v = self.v(h).view(B, S, H, Dh).transpose(1, 2)
        o = sdpa(q, k, v)
        return self.out(o.transpose(1, 2).reshape(B, S, D))

    def forward(self, x, enc, temb):
        L = enc.shape[1]
        nx, ne, g, eg = self.modulate(self.norm1_lin, self.norm1, x, enc, temb)
        a = self.attention(torch.cat([ne, nx], dim=1))
        x = x + g * a[:, L:]
        enc = enc + eg * a[:, :L]
        nx, ne, g, eg = self.modulate(self.norm2_lin, self.norm2, x, enc, temb)
        f = self.ff2(F.gelu(self.ff1(torch.cat([ne, nx], dim=1)), approximate="tanh"))
        return x + g * f[:, L:], enc + eg * f[:, :L]


def sdpa(q, k, v):
    """softmax(q·kᵀ/√d)·v over [B, H, L, D]. torch >= 2.0 has a fused kernel; torch 1.13 (Debian 12) has not, and
    materialising all B·H·L² scores at once (38 GB in bf16 at L = 17,776) does not fit this machine, so the
    scores are materialised one (batch, head, block of query rows) at a time, at most ~256 MB each: the same
    arithmetic, the memory a careful user of that torch would give it."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    B, H, L, D = q.shape
    Lk = k.shape[2]
    scale = 1.0 / math.sqrt(D)
    rows = max(1, min(L, (256 << 20) // (q.element_size() * Lk)))
    out = torch.empty(B, H, L, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            kt = k[b, h].transpose(0, 1)
            for r0 in range(0, L, rows):
                s = torch.matmul(q[b, h, r0:r0 + rows], kt) * scale
                out[b, h, r0:r0 + rows] = torch.matmul(torch.softmax(s, dim=-1), v[b, h])
    return out


def timed(fn, repeat):
    fn()  # warm-up: allocations, oneDNN primitive creation
    sec = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sec.append(time.perf_counter() - t0)
    return min(sec), statistics.median(sec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["block", "gemm", "attention"])
    ap.add_argument("--tokens", type=int, default=1350)
    ap.add_argument("--heads", type=int, default=30)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--k", type=int, default=1920)
    ap.add_argument("--n", type=int, default=1920)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dt = torch.bfloat16 if a.precision == "bf16" else torch.float32
    torch.manual_seed(0)
    with torch.no_grad():
        if a.mode == "gemm":
            x = torch.randn(a.m, a.k, dtype=dt)
            w = torch.randn(a.k, a.n, dtype=dt) / math.sqrt(a.k)
            flops = 2.0 * a.m * a.n * a.k
            best, med = timed(lambda: torch.matmul(x, w), a.repeat)
        elif a.mode == "attention":
            B, H, L, D = 2, a.heads, a.tokens, a.head_dim
            q, k, v = (torch.randn(B, H, L, D, dtype=dt) for _ in range(3))
            flops = 4.0 * B * H * L * L * D
            best, med = timed(lambda: sdpa(q, k, v), a.repeat)
        else:
            D, FF, B, Lt = 1920, 7680, 2, 226
            blk = Block().to(dt).eval()
            x = torch.randn(B, a.tokens, D, dtype=dt)
            enc = torch.randn(B, Lt, D, dtype=dt)
            temb = torch.randn(B, 512, dtype=dt)
            L = a.tokens + Lt
            flops = 2.0 * (4 * D * D + 2 * D * FF) * L * B + 4.0 * L * L * D * B
            best, med = timed(lambda: blk(x, enc, temb), a.repeat)
    json.dump({"seconds": best, "seconds_median": med, "gflops": flops / best / 1e9,
               "torch_version": torch.__version__, "precision": a.precision,
               "threads": torch.get_num_threads()}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
