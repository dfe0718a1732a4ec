"""``memnet train``: train or fine-tune a model from a TOML config and/or flags.

    memnet train --task denoise --clean-dir Train400 --levels 0,75 --steps 20000 --out-dir runs/dn --name memnet-denoise
    memnet train --config run.toml --resume

Checkpoints (``checkpoint.safetensors``) and ``events.jsonl`` go to ``--out-dir``;
the final model is saved there too (``--install`` puts it in the user model
folder instead, where ``restore(model=NAME)`` finds it). A run whose checkpoint
or model already exists is refused unless ``--resume`` continues it or
``--overwrite`` replaces it (the old files stay until the new model is saved).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from ..core.tasks import TASK_NAMES
from ..core.timefmt import format_seconds
from ..training.config import DEFAULT_ARCH, LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, SELF_SUPERVISED


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(":", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as '0,75' or '2,3,4', got {text!r}") from None
    return [int(v) if v == int(v) else v for v in values]


def register(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model (checkpoints, resume, events.jsonl)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--config", metavar="FILE.toml", help="TrainConfig keys in TOML; flags given on the command line win")
    a("--task", choices=TASK_NAMES)
    a("--clean-dir", nargs="+", metavar="DIR", help="folder(s) of clean images (degraded on the fly)")
    a("--pairs", nargs=2, metavar=("DEGRADED_DIR", "CLEAN_DIR"), help="folders of real pairs matched by file name")
    a("--noisy", dest="noisy_dir", metavar="DIR",
      help="folder of noisy images alone: self-supervised denoising (from the bundled CPU default denoiser "
           "unless --init or --arch/--blocks... are given)")
    a("--self-supervised", choices=SELF_SUPERVISED, help="the objective with --noisy (default: the first)")
    a("--freeze-batchnorm", action=argparse.BooleanOptionalAction, default=None,
      help="normalise by the base model's BatchNorm statistics while training (default: on with --noisy and a model)")
    a("--levels", type=_floats, help="denoise: sigma range lo,hi; sr: scales 2,3,4; deblock: JPEG quality range lo,hi; "
                                     "deblur: PSF width range lo,hi (pixels)")
    a("--arch", dest="architecture", choices=tuple(DEFAULT_ARCH))
    a("--blocks", type=int, help="MemNet memory blocks M; MHNet NAF blocks per encoder and decoder level")
    a("--depth", type=int, help="MHNet encoder levels (2x downsamplings)")
    a("--recursions", type=int, help="MemNet recursions R")
    a("--channels", type=int, help="filters per layer")
    a("--layers", type=int, help="RED30 convolution layers")
    a("--unshuffle", type=int, metavar="S",
      help="fast MemNet: run the memory blocks on the S x S pixel-unshuffled image (1: the paper's net)")
    a("--shared-recursions", action=argparse.BooleanOptionalAction, default=None,
      help="MemNet: the R recursions of a block share their two convs (the paper's, default); "
           "--no-shared-recursions gives each its own (same FLOPs; with --init, copies of the shared ones)")
    a("--init", help="start from this model (name or path), or another run's checkpoint.safetensors (its network and "
                     "weight average; a new optimizer and schedule from step 0), instead of a fresh network; with "
                     "--blocks/--recursions a MemNet is grown to them first, computing what it did (models/grow.py)")
    a("--steps", type=int)
    a("--batch", dest="batch_size", type=int)
    a("--patch", dest="patch_size", type=int)
    a("--optimizer", choices=OPTIMIZERS)
    a("--lr", type=float)
    a("--lr-min", type=float)
    a("--schedule", choices=SCHEDULES)
    a("--lr-step", type=int, help="step schedule: divide the lr by 10 every N steps")
    a("--warmup-steps", type=int)
    a("--weight-decay", type=float)
    a("--clip", type=float, help="gradient norm clip")
    a("--plain-loss", action="store_true", default=None, help="euclidean loss on the final output only")
    a("--loss", choices=LOSSES, help="pixel loss (default l2, the paper's; l1-balanced: L1 with each patch "
      "weighted by 1/(its L1 + 0.01), docs/training.md)")
    a("--ema", type=float, metavar="DECAY",
      help="keep an exponential moving average of the weights (e.g. 0.999); it is validated and saved")
    a("--minutes", type=float, help="wall-clock budget of this invocation: stop cleanly after it (--resume continues)")
    a("--checkpoint-minutes", type=float, help="also checkpoint after this many minutes (default 10)")
    a("--seed", type=int)
    a("--device", help="auto, cpu, cuda, cuda:1, mps")
    a("--precision", choices=PRECISIONS)
    a("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    a("--compile", action="store_true", default=None, help="torch.compile the network")
    a("--threads", type=int, help="CPU threads for torch")
    a("--out-dir", help="checkpoints, events.jsonl and (by default) the final model")
    a("--name", help="name of the final model")
    a("--install", action="store_true", help="save the final model in the user model folder (restore(model=NAME))")
    a("--checkpoint-every", type=int)
    a("--validate-every", type=int)
    a("--log-every", type=int)
    a("--recalibrate-batches", type=int, metavar="N",
      help="after the last step, re-estimate the BatchNorm statistics over N training batches (default 20; 0: off)")
    a("--val-dir", help="folder of held-out clean validation images (with --clean-dir)")
    a("--val-pairs", nargs=2, metavar=("DEGRADED_DIR", "CLEAN_DIR"), help="held-out validation pairs (with --pairs)")
    a("--val-count", type=int, help="training images held out for validation (default 4)")
    a("--val-fraction", type=float)
    a("--val-crop", type=int, help="centre crop of each validation image (0: whole)")
    a("--val-levels", type=_floats)
    a("--scales", type=_floats, metavar="1,0.9,0.8,0.7",
      help="with --clean-dir: also train on each training image downscaled by these factors below 1 "
           "(bicubic; DnCNN's multi-scale augmentation; validation images are never rescaled)")
    a("--resume", action="store_true", help="continue the run whose checkpoint is in --out-dir")
    a("--overwrite", action="store_true",
      help="replace the run and model already in --out-dir (or installed); they stay until the new model is saved")
    a("--json", action="store_true", help="print every event as a JSON line instead of progress lines")
    p.set_defaults(func=run)


_CONFIG_KEYS = ("task", "levels", "architecture", "init", "steps", "batch_size", "patch_size", "optimizer", "lr",
                "lr_min", "schedule", "lr_step", "warmup_steps", "weight_decay", "clip", "seed", "device", "precision",
                "channels_last", "compile", "threads", "out_dir", "name", "checkpoint_every", "validate_every",
                "log_every", "recalibrate_batches", "val_dir", "val_count", "val_fraction", "val_crop", "val_levels",
                "clean_dir", "loss", "ema", "minutes", "checkpoint_minutes", "noisy_dir", "self_supervised",
                "freeze_batchnorm", "scales")


def build_config(args):
    from ..training.config import TrainConfig, load_config

    overrides = {k: getattr(args, k) for k in _CONFIG_KEYS if getattr(args, k, None) is not None}
    arch = {k: getattr(args, k) for k in ("blocks", "recursions", "channels", "layers", "unshuffle", "depth",
                                          "shared_recursions")
            if getattr(args, k) is not None}
    if args.pairs:
        overrides["pairs_input_dir"], overrides["pairs_target_dir"] = args.pairs
    if args.val_pairs:
        overrides["val_pairs_input_dir"], overrides["val_pairs_target_dir"] = args.val_pairs
    if args.plain_loss:
        overrides["multi_supervised"] = False
    if args.config:
        cfg = load_config(args.config, **overrides)
        if arch:
            cfg.arch.update(arch)
    else:
        overrides.setdefault("arch", arch)
        cfg = TrainConfig(**overrides)
    if not cfg.out_dir:
        raise ValueError("--out-dir is required (checkpoints and events.jsonl go there)")
    cfg.model_dir = None if args.install else (cfg.model_dir or cfg.out_dir)
    return cfg


def describe(event) -> str | None:
    """One progress line for an event (Step lines are rate-limited by the caller)."""
    from ..training import events as ev

    if isinstance(event, ev.Started):
        what = "resuming at step" if event.resumed else "starting at step"
        return (f"{what} {event.step}/{event.total} on {event.device} ({event.precision}), {event.parameters:,} parameters, "
                f"{event.train_images} training images, {event.val_items} validation items")
    if isinstance(event, ev.Step):
        return (f"step {event.step}/{event.total}  loss {event.loss:.3e}  lr {event.lr:.2e}  "
                f"{event.patches_per_s:.1f} patches/s  eta {format_seconds(event.eta_s)}")
    if isinstance(event, ev.Validation):
        levels = "  ".join(f"{k}: {v['psnr']:.2f}" for k, v in event.per_level.items())
        return f"validation at step {event.step}: PSNR {event.psnr:.3f} dB (input {event.baseline_psnr:.3f})  [{levels}]"
    if isinstance(event, ev.CheckpointSaved):
        return f"checkpoint saved at step {event.step}: {event.path}"
    if isinstance(event, ev.BestModelSaved):
        return f"best validation so far ({event.psnr:.3f} dB at step {event.step}): model saved to {event.path}"
    if isinstance(event, ev.BatchNormRecalibrated):
        return (f"BatchNorm statistics recalibrated at step {event.step}: {event.layers} layers over "
                f"{event.batches} batches of {event.batch_size} ({event.seconds:.1f} s)")
    if isinstance(event, ev.Finished):
        state = "stopped" if event.stopped else "finished"
        psnr = f", validation PSNR {event.psnr:.3f} dB" if event.psnr is not None else ""
        return f"{state} at step {event.step}/{event.total}{psnr}; model {event.model_name!r} saved to {event.model_path}"
    if isinstance(event, ev.Failed):
        return f"FAILED at step {event.step}: {event.error}"
    return None


def run(args) -> int:
    from ..cli import CommandError
    from ..training import events as ev
    from ..training.trainer import Trainer

    try:
        cfg = build_config(args)
        if cfg.noisy_dir:  # noisy images alone
            from ..training.self_supervised import SelfSupervisedTrainer

            trainer = SelfSupervisedTrainer(cfg, resume=args.resume, overwrite=args.overwrite)
        else:
            trainer = Trainer(cfg, resume=args.resume, overwrite=args.overwrite)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    failed = False
    previous = _stop_on_interrupt(trainer)
    printer = _Printer(cfg.log_every, as_json=args.json)
    try:
        for event in trainer.run():
            printer.show(event)
            failed = failed or isinstance(event, ev.Failed)
    finally:
        printer.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
    return 1 if failed else 0


class _Printer:
    """Events to the terminal: a progress bar for steps on a terminal, else one line per log_every steps."""

    def __init__(self, every: int, as_json: bool):
        from .progressbar import ProgressBar

        self.every = every
        self.as_json = as_json
        self.bar = ProgressBar("train", unit="steps") if sys.stderr.isatty() and not as_json else None
        self.last_print = 0.0

    def show(self, event) -> None:
        from ..training import events as ev

        if self.as_json:
            print(json.dumps(event.to_dict()), flush=True)
            return
        if isinstance(event, ev.Step):
            if self.bar is not None:
                self.bar.desc = f"train loss {event.loss:.2e} lr {event.lr:.1e} {event.patches_per_s:.0f} patch/s"
                self.bar.update(event.step, event.total)
                return
            now = time.monotonic()
            if event.step % self.every and event.step != event.total and now - self.last_print < 30:
                return
            self.last_print = now
        line = describe(event)
        if line:
            if self.bar is not None:
                sys.stderr.write("\r\x1b[K")
            print(line, file=sys.stderr if isinstance(event, ev.Failed) else sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stop_on_interrupt(trainer):
    """First Ctrl-C: stop after the current step (checkpoint + model saved); second: abort."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if trainer.stop_event.is_set():
            raise KeyboardInterrupt
        print("stopping after the current step (Ctrl-C again to abort)...", file=sys.stderr, flush=True)
        trainer.request_stop()

    # SIGTERM (`timeout`, a job scheduler): the same clean stop
    return signal.signal(signal.SIGINT, handler), signal.signal(signal.SIGTERM, handler)
