"""``memnet eval``: PSNR/SSIM of a model (and of the degraded input) on the
benchmark sets with the paper's protocol. The engine is
:func:`napari_memnet.evaluate.evaluate`; this module only parses and prints."""

from __future__ import annotations

import sys

from ..core.tasks import TASK_NAMES, TASKS


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="measure PSNR/SSIM on benchmark sets (paper protocol)",
        description="Measure PSNR/SSIM of a model and of the degraded input (baseline) on benchmark sets, "
        "with the MemNet paper's per-task protocol (see docs/evaluation.md).",
    )
    p.add_argument("--task", required=True, choices=TASK_NAMES, help="restoration task")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="test folder holding one sub-folder per dataset (e.g. shared/data/test)")
    p.add_argument("--datasets", metavar="A,B",
                   help="comma-separated dataset folders (default: "
                   + "; ".join(f"{t.name} {','.join(t.eval_datasets)}" for t in TASKS.values()) + ")")
    p.add_argument("--levels", metavar="L1,L2",
                   help="noise sigmas / SR scales / JPEG qualities (default: "
                   + " / ".join(",".join(map(str, t.eval_levels)) for t in TASKS.values()) + ")")
    p.add_argument("--model", metavar="NAME|PATH|none",
                   help="model name or file; 'none' = baseline only (default: the task's bundled model if installed)")
    p.add_argument("--device", default="auto", help="torch device for the model (default: auto)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="average the model over N (1..8) rotated and flipped copies of each image (default 1: off)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (denoise; per image, deterministic)")
    p.add_argument("--max-images", type=int, metavar="N", help="only the first N images of each set (quick check)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the records as JSON (atomically; strict JSON: an infinite PSNR is null)")
    p.set_defaults(func=run)


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_row(record: dict) -> str:
    return (f"{record['dataset']:<12} {record['level']!s:>5} {_fmt(record['psnr'], 2):>7} "
            f"{_fmt(record['ssim'], 4):>7} {_fmt(record['baseline_psnr'], 2):>9} "
            f"{_fmt(record['baseline_ssim'], 4):>9} {record['images']:>6}")


def run(args) -> int:
    from ..cli import CommandError
    from ..evaluate import default_model_name, evaluate, records_to_json
    from ..models.files import ModelFileError
    from ..restoration.ensemble import check_ensemble, label

    try:
        check_ensemble(args.ensemble)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    model = args.model
    if model is not None and model.lower() == "none":
        model = None
    elif model is None:
        model = default_model_name(args.task, args.device)
        if model is None:
            print(f"note: no bundled model for task {args.task!r} is installed; reporting the baseline only "
                  f"(pass --model NAME|PATH to evaluate a model)", file=sys.stderr)
    print(f"task {args.task}, model {label(model, args.ensemble) if model else 'none (baseline only)'}; "
          f"level = {TASKS[args.task].level_name}; baseline = the degraded input")
    print(f"{'dataset':<12} {'level':>5} {'PSNR':>7} {'SSIM':>7} {'base PSNR':>9} {'base SSIM':>9} {'images':>6}")

    def show(record):
        print(format_row(record), flush=True)

    try:
        records = evaluate(args.task, args.data, datasets=args.datasets, levels=args.levels, model=model,
                           device=args.device, seed=args.seed, max_images=args.max_images, progress=show,
                           ensemble=args.ensemble)
    except (ValueError, ModelFileError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        from ..core.atomic import atomic_write_text

        atomic_write_text(args.json, records_to_json(records) + "\n")  # strict JSON: inf/nan -> null
        print(f"wrote {len(records)} records to {args.json}")
    return 0
