"""Is int8 a way to a faster fast denoiser on a CPU without bf16? One 64 -> 64 3x3 convolution (the
fast MemNet's only kind of layer that matters: 92 % of its FLOPs) in fp32 channels_last (oneDNN, what
``restore`` runs) against PyTorch's quantized int8 convolution (fbgemm, per-channel int8 weights, uint8
activations), alternated in one process, the median of the rounds:

    python benchmarks/int8_conv.py --size 256 --rounds 7 --threads 2 --json docs/results/int8_conv.json

Speed only: the quantized path's accuracy is not measured (the weights are random). PyTorch 2.13 warns
that its quantized tensors are deprecated; this script measures what they would give, nothing in the
package uses them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _seconds(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="H = W of the feature map (a 512 px tile at space-to-depth 2)")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=5, help="convolutions per timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch
    import torch.ao.nn.quantized as nnq

    from napari_memnet.core.machine import describe_cpu

    warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "fbgemm"
    c, n = args.channels, args.size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, n, n, generator=gen).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval().to(memory_format=torch.channels_last)
    qconv = nnq.Conv2d(c, c, 3, padding=1)
    w_scale = conv.weight.detach().abs().amax(dim=(1, 2, 3)) / 127
    qconv.set_weight_bias(torch.quantize_per_channel(conv.weight.detach(), w_scale, torch.zeros(c, dtype=torch.long), 0,
                                                     torch.qint8), conv.bias.detach())
    qconv.scale, qconv.zero_point = float(x.abs().max()) / 64, 128
    qx = torch.quantize_per_tensor(x, float(x.abs().max()) / 127, 128, torch.quint8)
    flop = 2 * 9 * c * c * n * n
    fp32, int8 = [], []
    with torch.no_grad():
        conv(x), qconv(qx)  # warm-up
        for _ in range(args.rounds):
            fp32.append(_seconds(lambda: conv(x), args.reps))
            int8.append(_seconds(lambda: qconv(qx), args.reps))
        # what an int8 layer adds around it when its neighbours stay fp32: quantize, dequantize
        qdq = statistics.median(_seconds(lambda: torch.quantize_per_tensor(x, 0.05, 128, torch.quint8).dequantize(), args.reps)
                                for _ in range(3))
    a, b = statistics.median(fp32), statistics.median(int8)
    out = {"size": n, "channels": c, "threads": args.threads, "fp32_ms": round(a * 1e3, 2), "int8_ms": round(b * 1e3, 2),
           "int8_speedup": round(a / b, 3), "fp32_gflops": round(flop / a / 1e9, 1), "int8_gops": round(flop / b / 1e9, 1),
           "quantize_dequantize_ms": round(qdq * 1e3, 2), "torch": torch.__version__, "cpu": describe_cpu(),
           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "command": " ".join(sys.argv)}
    print(json.dumps(out, indent=1))
    if args.json:
        from napari_memnet.core.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
