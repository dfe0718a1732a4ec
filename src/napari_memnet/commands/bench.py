"""``memnet bench``: megapixels per second and peak memory of ``restore`` vs a
plain reference forward, per image size (see napari_memnet.benchmark)."""

from __future__ import annotations

import json


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        import argparse

        raise argparse.ArgumentTypeError(f"expected comma-separated positive sizes like 256,512, got {text!r}")
    return sizes


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark restore against a plain reference forward")
    p.add_argument("--sizes", type=_sizes, default=[256, 512, 1024, 2048], help="square image sides (default "
                   "256,512,1024,2048)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--model", help="model name or file (default: an untrained M6R6 C64 with random BN stats)")
    p.add_argument("--precision", default="auto", help="precision of restore (default auto)")
    p.add_argument("--tile", type=int, help="tile side of restore (default: automatic)")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="memory format of restore (default auto: on for CUDA and CPU)")
    p.add_argument("--no-reference", action="store_true", help="only time restore")
    p.add_argument("--versus", metavar="MODEL",
                   help="also time restore with this model right after --model at every size (ratio of MP/s)")
    p.add_argument("--versus-max-tiles", type=int, metavar="N", help="stop each --versus case after N tiles")
    p.add_argument("--max-tiles", type=int, help="stop each restore case after this many tiles")
    p.add_argument("--timeout", type=float, help="seconds allowed per case")
    p.add_argument("--precision-check", metavar="DIR",
                   help="instead: denoise the PNGs in DIR (e.g. Set12) in fp32 and bf16, compare time and PSNR")
    p.add_argument("--sigma", type=float, default=25.0, help="noise sigma of --precision-check (0..255 scale)")
    p.add_argument("--crop", type=int, help="centre crop side for --precision-check")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.atomic import atomic_write_text
    from ..benchmark import run_benchmark
    from ..cli import CommandError
    from ..core.devices import resolve_device

    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.precision_check:
        from ..benchmark import precision_check

        try:
            results = precision_check(args.precision_check, model=args.model, device=device, sigma=args.sigma,
                                      crop=args.crop)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for name, row in results["precisions"].items():
            print(f"{name}: {row['seconds']:.1f} s (x{row['speed_vs_first']:.2f}), mean PSNR {row['psnr']:.3f} dB "
                  f"({row['psnr_delta_db']:+.4f} dB), max |diff| vs fp32 {row['max_abs_diff_vs_first']:.2e}")
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        return 0
    results = run_benchmark(args.sizes, device=device, model=args.model, precision=args.precision, tile=args.tile,
                            reference=not args.no_reference, max_tiles=args.max_tiles, timeout=args.timeout,
                            channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
                            versus=args.versus, versus_max_tiles=args.versus_max_tiles,
                            log=lambda text: print(text, flush=True))
    if device.startswith("cuda"):
        for row in results["rows"]:
            mp = row["restore"].get("mp_per_s")
            if mp is not None:
                verdict = "meets" if mp >= 20 else "misses"
                print(f"{row['size']} px: {mp:.1f} MP/s {verdict} the 20 MP/s GPU target")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any("error" in row["restore"] for row in results["rows"]) else 0
