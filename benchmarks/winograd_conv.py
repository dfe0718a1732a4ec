"""Would a Winograd convolution make the CPU restore faster? One 3x3 convolution of C channels on
a C x S x S map: oneDNN's direct ``F.conv2d`` (contiguous and channels_last) against Winograd
F(2x2, 3x3) written with PyTorch ops (2.25x fewer multiplications: 16 batched C x C products per
2x2 output tile instead of 36 multiply-adds per pixel per channel pair). Prints seconds (mean of
``--repeats`` after one warm-up), the Winograd parts, and the largest difference from F.conv2d.

    PYTHONPATH=src python benchmarks/winograd_conv.py --channels 64 --side 512 --threads 2

docs/results.md ("Measured on the slowest CPU yet") has what it measured: not pursued.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

# F(2x2, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A on 4x4 input tiles of stride 2
G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _b_rows(a0, a1, a2, a3):
    """B^T applied along one axis: the four transformed rows of four input rows."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


def winograd_conv(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, parts: dict) -> torch.Tensor:
    """3x3 convolution, padding 1, of a 1 x C x H x W ``x`` (H, W even) with the transformed
    weights ``u`` (16 x C_out x C_in); ``parts`` gets the seconds of the three stages."""
    _, c, h, w = x.shape
    th, tw = h // 2, w // 2
    t0 = time.perf_counter()
    xp = F.pad(x, (1, 1, 1, 1))
    rows = _b_rows(*(xp[:, :, k:k + 2 * th:2, :] for k in range(4)))
    v = torch.empty(4, 4, c, th, tw)
    for i, row in enumerate(rows):
        cols = [row[0, :, :, k:k + 2 * tw:2] for k in range(4)]
        for j, col in enumerate(_b_rows(*cols)):
            v[i, j].copy_(col)
    t1 = time.perf_counter()
    m = torch.bmm(u, v.view(16, c, th * tw)).view(4, 4, -1, th, tw)
    t2 = time.perf_counter()
    y = torch.empty(1, m.shape[2], h, w)
    for i, s in enumerate((m[0] + m[1] + m[2], m[1] - m[2] - m[3])):  # A^T along rows
        torch.add(s[0] + s[1], s[2], out=y[0, :, i::2, 0::2])  # and along columns
        torch.sub(s[1] - s[2], s[3], out=y[0, :, i::2, 1::2])
    y.add_(bias.view(1, -1, 1, 1))
    t3 = time.perf_counter()
    for name, dt in (("input_transform", t1 - t0), ("products", t2 - t1), ("output_transform", t3 - t2)):
        parts[name] = parts.get(name, 0.0) + dt
    return y


def _timed(fn, repeats: int):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--side", type=int, default=512, help="map side (even)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    c, s = args.channels, args.side
    x = torch.randn(1, c, s, s, generator=gen)
    weight = torch.randn(c, c, 3, 3, generator=gen) / (3 * c ** 0.5)
    bias = torch.randn(c, generator=gen)
    u = torch.einsum("ij,ocjk,lk->iloc", G, weight, G).reshape(16, c, c).contiguous()
    direct, ref = _timed(lambda: F.conv2d(x, weight, bias, padding=1), args.repeats)
    xc = x.contiguous(memory_format=torch.channels_last)
    direct_cl, _ = _timed(lambda: F.conv2d(xc, weight, bias, padding=1), args.repeats)
    parts: dict = {}
    wino, y = _timed(lambda: winograd_conv(x, u, bias, parts), args.repeats)
    parts = {k: v / (args.repeats + 1) for k, v in parts.items()}
    flop = 2 * c * c * 9 * s * s
    result = {"channels": c, "side": s, "threads": args.threads, "direct_s": direct, "direct_channels_last_s": direct_cl,
              "winograd_s": wino, "winograd_parts_s": parts,
              "direct_gflops": flop / direct / 1e9, "winograd_products_gflops": flop / 2.25 / parts["products"] / 1e9,
              "max_abs_diff": float((y - ref).abs().max())}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
