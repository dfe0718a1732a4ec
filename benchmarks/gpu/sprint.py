"""A training sprint on the GPU: continue a task's paper model for N minutes, in one command.

    PYTHONPATH=src python benchmarks/gpu/sprint.py --task denoise --minutes 6 --out DIR
    PYTHONPATH=src python benchmarks/gpu/sprint.py --task denoise --model red30 --minutes 6 --out DIR
    PYTHONPATH=src python benchmarks/gpu/sprint.py --task deblock --minutes 0.05 --out DIR --smoke

Starts from ``--model`` (default: the task's bundled ``memnet-denoise`` / ``memnet-sr`` /
``memnet-deblock``; any model name or file, or a fresh ``red30`` / ``fast``) and trains it with a
recipe for a large GPU: bf16 autocast, channels_last, batches of 64 patches of 64 px, fused Adam
(1e-4 when continuing a trained model, 1e-3 for a fresh one) with a warm-up and a cosine decay over
the time budget, gradient clipping, cuDNN autotuning, optional ``torch.compile`` (``--compile``),
and batches prepared by the CPU cores in worker processes (``--loader workers``: crops, flips, noise,
bicubic, JPEG) so the GPU does not wait, or on the GPU in this process (``--loader inline``).
Nothing in the training loop waits for the GPU except the loss read every ``LOG_S`` seconds.

Validation: ``--val-count`` training images held out before training (never a test set), degraded
once at the paper's levels, measured before and after (eval mode, fp32). Every ``--checkpoint-minutes``
the model is validated and, when it beats the best so far, saved into ``--out`` (atomically);
``sprint.json`` is re-written each time, so a killed command leaves the best-so-far weights and
numbers. At the end the BatchNorm statistics are re-estimated (``--recalibrate-batches``) and the
better of running and re-estimated statistics is kept. ``--max-seconds`` bounds the whole command,
start-up included (default 540 s, a 9-minute command); ``--profile-steps K`` first times K steps
phase by phase and profiles a few with the torch profiler (those steps train too).

Output in ``--out``: ``sprint.json`` and ``NAME.safetensors`` + ``NAME.json`` (``modelfile.save_model``).
"""

from __future__ import annotations

import time

START = time.monotonic()  # the command's clock starts before the heavy imports

import argparse  # noqa: E402
import copy  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

_common.setup()

LOG_S = 10.0  # read the loss (a GPU sync) this often
WARMUP_STEPS = 50
FINAL_LR_FACTOR = 0.01  # cosine decay from lr to lr * this over the training time


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=("denoise", "sr", "deblock"))
    p.add_argument("--minutes", type=float, default=5.0, help="training time (default 5)")
    p.add_argument("--out", required=True, help="folder for sprint.json and the weights")
    p.add_argument("--smoke", action="store_true", help="the CPU, a tiny net, the bundled sample image, seconds")
    p.add_argument("--model", help="model name or file to continue, or 'red30' / 'fast' for a fresh net "
                   "(default: the task's bundled model)")
    p.add_argument("--grow", metavar="M,R", help="a MemNet start model grown to M memory blocks and R recursions "
                   "first, computing what it did (napari_memnet/models/grow.py), e.g. 2,4")
    p.add_argument("--name", help="name of the saved model (default: <start model>-sprint; a *-sprint model keeps "
                   "its name)")
    p.add_argument("--data", help="training images (default: .data/train, else ../shared/data/train)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, help="patches per step (default 64, smoke 4)")
    p.add_argument("--patch", type=int, help="patch side (default 64, smoke 24)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4 continuing, 1e-3 fresh)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--levels", help="comma-separated: sigma range / scales / JPEG range (default: the model card's)")
    p.add_argument("--loader", choices=("workers", "inline"), default="workers")
    p.add_argument("--workers", type=int, help="loader processes (default: CPU cores - 2, at most 14; smoke 2)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (its compile time counts)")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="do not autotune cuDNN kernels")
    p.add_argument("--profile-steps", type=int, default=0, metavar="K", help="time and profile K steps first")
    p.add_argument("--val-count", type=int, help="training images held out (default 8, smoke 2)")
    p.add_argument("--val-dir", help="validation images from this folder instead of --val-count held out (e.g. "
                   ".data/val/Train400: the CPU runs' fixed split); same-named training images are left out")
    p.add_argument("--val-crop", type=int, help="validation centre crop (default 192, smoke 48)")
    p.add_argument("--checkpoint-minutes", type=float, default=2.0)
    p.add_argument("--recalibrate-batches", type=int, help="BatchNorm re-estimation batches (default 20, smoke 2)")
    p.add_argument("--freeze-batchnorm", action="store_true", help="BatchNorm normalises with the start model's "
                   "running statistics and keeps them (the CPU recipe late in a run: docs/training.md)")
    p.add_argument("--max-seconds", type=float, default=540.0, help="the whole command, start-up included")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (default: none, smoke 4)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    smoke = args.smoke
    for key, gpu, cpu in (("batch", 64, 4), ("patch", 64, 24), ("val_count", 8, 2), ("val_crop", 192, 48),
                          ("recalibrate_batches", 20, 2), ("workers", max(1, min(14, (os.cpu_count() or 4) - 2)), 2),
                          ("max_steps", None, 4)):
        if getattr(args, key) is None:
            setattr(args, key, cpu if smoke else gpu)
    return args


class Sprint:
    """The network, its optimizer and one training step (bf16 autocast, no host sync)."""

    def __init__(self, net, device, precision, lr, clip, compile_net):
        import torch

        self.net, self.device, self.precision, self.clip = net, device, precision, clip
        self.multi = bool(getattr(getattr(net, "config", None), "multi_supervised", False))
        self.params = [p for p in net.parameters() if p.requires_grad]
        fused = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.Adam(self.params, lr=lr, **fused)
        self.forward = torch.compile(net) if compile_net else net
        self.compile_error = None
        self._compiled_ran = not compile_net

    def step(self, inp, tgt, lr, mark=None):
        """One optimisation step; the loss stays on the device. ``mark(phase)`` after each phase.
        If the compiled network fails on its first step, train eagerly (said in ``compile_error``)."""
        if self._compiled_ran:
            return self._step(inp, tgt, lr, mark)
        try:
            loss = self._step(inp, tgt, lr, mark)
        except Exception as exc:  # noqa: BLE001 - e.g. no compiler on the machine
            self.compile_error = _common.error_text(exc, 1500)
            self.forward = self.net
            loss = self._step(inp, tgt, lr, mark)
        self._compiled_ran = True
        return loss

    def autocast(self):
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _step(self, inp, tgt, lr, mark=None):
        import torch

        from napari_memnet.models import euclidean_loss, multi_supervised_loss

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast():
            if self.multi:
                final, branches = self.forward(inp, return_branches=True)
                loss = multi_supervised_loss(final, branches, tgt)[0]
            else:
                loss = euclidean_loss(self.forward(inp), tgt)
        mark and mark("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark and mark("backward")
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        mark and mark("optimizer")
        return loss.detach()


def lr_at(base, step, fraction):
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    low = base * FINAL_LR_FACTOR
    return warm * (low + 0.5 * (base - low) * (1 + math.cos(math.pi * min(1.0, fraction))))


def profile_phase(sprint, batches, steps, lr_fn, device):
    """Time ``steps`` steps phase by phase (synchronised), then free-running, then profile 3 more
    (``lr_fn(i)``: the learning rate of step i; these steps train too)."""
    from _common import profile_table, sync

    phases = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    timed = max(1, steps // 2)
    compile_s = None
    for i in range(timed):
        sync(device)
        t = [time.perf_counter()]

        def mark(phase):
            sync(device)
            now = time.perf_counter()
            phases[phase] += now - t[0]
            t[0] = now

        inp, tgt = next(batches)
        mark("data")
        t_step = time.perf_counter()
        sprint.step(inp, tgt, lr_fn(i), mark)
        if i == 0 and sprint.forward is not sprint.net:
            compile_s = time.perf_counter() - t_step  # the first compiled step compiles
            phases = {k: 0.0 for k in phases}
    counted = timed - (1 if compile_s is not None else 0)
    free = max(1, steps - timed)
    wait0 = batches.wait_s
    sync(device)
    t0 = time.perf_counter()
    for i in range(timed, timed + free):
        inp, tgt = next(batches)
        sprint.step(inp, tgt, lr_fn(i))
    sync(device)
    step_s = (time.perf_counter() - t0) / free
    table = profile_table(lambda: sprint.step(*next(batches), lr_fn(timed + free)), device, rows=15, repeat=3)
    return {"steps": timed + free + 3, "synchronised_steps": counted, "compile_seconds": compile_s,
            "phase_ms": {k: 1000 * v / max(counted, 1) for k, v in phases.items()},
            "step_ms": 1000 * step_s, "patches_per_s": int(inp.shape[0]) / step_s,
            "data_wait_ms_per_step": 1000 * (batches.wait_s - wait0) / free, "profiler": table}


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"status": "starting", "task": args.task, "started_utc": _common.utc_now(), "smoke": args.smoke}
    with _common.smoke_threads(args.smoke):
        try:
            return run(args, out, record)
        except Exception as exc:  # noqa: BLE001 - the JSON says what failed, the weights so far stay
            record.update(status="failed", error=_common.error_text(exc))
            _common.write_json(out / "sprint.json", record)
            print(record["error"], file=sys.stderr, flush=True)
            return 1


def run(args, out, record) -> int:
    import torch

    from _sprint_data import BatchStream, card_levels, load_data, start_network, validate
    from napari_memnet.training.bn_calibration import batchnorm_layers, freeze_batchnorm, recalibrate_batchnorm

    device = torch.device("cpu") if args.smoke else _common.api("resolve_device")(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda and not args.no_cudnn_benchmark
    precision = "bf16" if cuda else "fp32"
    save = lambda: _common.write_json(out / "sprint.json", record)  # noqa: E731
    torch.manual_seed(args.seed)  # a fresh network's initial weights
    net, start, card = start_network(args.model, args.task, args.smoke)
    if args.grow:
        from napari_memnet.models.grow import grow_memnet

        blocks, recursions = (int(v) for v in args.grow.split(","))
        net = grow_memnet(net, blocks, recursions).train()
        record["grown"] = {"from": start, "blocks": blocks, "recursions": recursions}
    levels = tuple(float(v) for v in args.levels.split(",")) if args.levels else card_levels(card, args.task)
    data, levels, source = load_data(args.task, levels, _common.data_root(args.data), patch=args.patch,
                                     val_count=args.val_count, val_crop=args.val_crop, seed=args.seed,
                                     smoke=args.smoke, val_dir=args.val_dir)
    fresh = card is None
    lr = args.lr or (1e-3 if fresh else 1e-4)
    grown = f"-m{net.config.blocks}r{net.config.recursions}" if args.grow else ""
    name = args.name or (f"{args.task}-{net.architecture}{grown}-sprint" if fresh
                         else start if start.endswith("-sprint") and not grown else f"{start}{grown}-sprint")
    channels_last = True

    def training_mode():  # after every validation (which leaves the net in train mode)
        net.train()
        if args.freeze_batchnorm:
            freeze_batchnorm(net)

    net.to(device)
    net.to(memory_format=torch.channels_last)
    config = {"batch": args.batch, "patch": args.patch, "lr": lr, "final_lr": lr * FINAL_LR_FACTOR,
              "warmup_steps": WARMUP_STEPS, "clip": args.clip, "optimizer": "adam" + (" fused" if cuda else ""),
              "precision": precision, "channels_last": channels_last, "compile": args.compile,
              "cudnn_benchmark": torch.backends.cudnn.benchmark, "loader": args.loader,
              "workers": args.workers if args.loader == "workers" else 0, "levels": list(levels),
              "val_count": args.val_count, "val_dir": args.val_dir, "val_crop": args.val_crop, "seed": args.seed,
              "minutes": args.minutes, "max_seconds": args.max_seconds, "max_steps": args.max_steps,
              "checkpoint_minutes": args.checkpoint_minutes, "recalibrate_batches": args.recalibrate_batches,
              "freeze_batchnorm": args.freeze_batchnorm}
    record.update(status="validating", model=start, name=name, architecture=net.architecture,
                  arch=net.config.to_dict(), data=source, train_images=len(data.train),
                  val_images=sorted({v.name for v in data.val}), config=config,
                  environment=_common.environment(device), parameters=sum(p.numel() for p in net.parameters()))
    save()
    before = validate(net, data.val, args.task, device)
    training_mode()
    best = {"source": "start", "step": 0, **before}
    record.update(val_psnr_before=before["psnr"], val_input_psnr=before["input_psnr"], before=before,
                  startup_seconds=time.monotonic() - START)

    def save_weights(note):
        from napari_memnet.training.card import level_card

        save_model = _common.api("save_model")

        metrics = [{"dataset": "validation (held-out training images)", "level": lv, "psnr": round(v["psnr"], 4),
                    "input_psnr": round(v["input_psnr"], 4), "before_psnr": before["per_level"][lv]["psnr"],
                    "items": v["items"]} for lv, v in best["per_level"].items()]
        info = save_model(net, name, task=args.task, directory=out, levels=level_card(args.task, levels),
                          base_model=start, metrics=metrics, description=f"{args.task} sprint: {note}",
                          training={"sprint": config, "steps": best["step"], "device": str(device),
                                    "validation_psnr_before": before["psnr"], "validation_psnr_after": best["psnr"],
                                    "data": data.summary()})
        record["weights"] = {"path": info.path.name, "bytes": info.path.stat().st_size, "source": best["source"],
                             "step": best["step"]}

    save_weights("the starting weights (nothing better yet)")
    batches = BatchStream(args.loader, data.train, args.task, levels, args.patch, args.batch, args.seed, device,
                          args.workers, channels_last)
    sprint = Sprint(net, device, precision, lr, args.clip, args.compile)
    reserve = 3 * before["seconds"] + (15.0 if not args.smoke else 1.0)  # final validations, recalibration, saving
    step, history, diverged = 0, [], None
    record["status"] = "training"
    t_train = time.monotonic()
    train_end = min(t_train + 60 * args.minutes, START + args.max_seconds - reserve)
    if args.profile_steps > 0:
        try:
            record["profile"] = profile_phase(sprint, batches, args.profile_steps, lambda i: lr_at(lr, i, 0.0),
                                              device)
            step += record["profile"]["steps"]
        except Exception as exc:  # noqa: BLE001 - a profiler problem must not cost the sprint
            record["profile"] = {"error": _common.error_text(exc)}
        save()
    loss_sum, loss_n, last_log, last_ckpt = torch.zeros((), device=device), 0, time.monotonic(), time.monotonic()
    while time.monotonic() < train_end and not (args.max_steps and step >= args.max_steps):
        fraction = (time.monotonic() - t_train) / max(train_end - t_train, 1e-9)
        inp, tgt = next(batches)
        loss_sum += sprint.step(inp, tgt, lr_at(lr, step, fraction))
        loss_n += 1
        step += 1
        now = time.monotonic()
        if now - last_log >= LOG_S or now >= train_end:
            loss = float(loss_sum) / loss_n  # the one sync
            history.append({"step": step, "seconds": round(now - t_train, 2), "loss": loss,
                            "lr": lr_at(lr, step, fraction)})
            print(f"step {step} {now - t_train:.0f} s loss {loss:.3e}", flush=True)
            loss_sum.zero_()
            loss_n, last_log = 0, now
            if not math.isfinite(loss):
                diverged = step
                break
        if now - last_ckpt >= 60 * args.checkpoint_minutes:
            val = validate(net, data.val, args.task, device)
            training_mode()
            history.append({"step": step, "seconds": round(now - t_train, 2), "val_psnr": val["psnr"]})
            if val["psnr"] > best["psnr"]:
                best = {"source": f"step {step}", "step": step, **val}
                save_weights(f"{step} steps (best validation so far)")
            record.update(steps=step, history=history, val_psnr_best=best["psnr"])
            save()
            last_ckpt = time.monotonic()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.monotonic() - t_train
    record.update(status="finishing", steps=step, seconds=train_s, patches_per_s=step * args.batch / train_s,
                  data_wait_seconds=batches.wait_s, diverged_at_step=diverged, history=history,
                  compile_error=sprint.compile_error)
    save()
    finals = {}
    if diverged is None:
        finals["running"] = validate(net, data.val, args.task, device)
        running_state = copy.deepcopy(net.state_dict())
        if args.recalibrate_batches > 0 and batchnorm_layers(net):
            recalibrate_batchnorm(net, (next(batches)[0] for _ in range(args.recalibrate_batches)))
            finals["recalibrated"] = validate(net, data.val, args.task, device)
        choice = max(finals, key=lambda k: finals[k]["psnr"])
        if finals[choice]["psnr"] > best["psnr"]:
            if choice == "running":
                net.load_state_dict(running_state)
            what = f", {choice} BatchNorm statistics" if batchnorm_layers(net) else ""
            best = {"source": f"step {step}{what}", "step": step, **finals[choice]}
            save_weights(f"{step} steps{what}")
    batches.close()
    per_level = {lv: {"input_psnr": v["input_psnr"], "before": v["psnr"], "after": best["per_level"][lv]["psnr"]}
                 for lv, v in before["per_level"].items()}
    record.update(status="done", val_psnr_after=best["psnr"], improved=best["psnr"] > before["psnr"],
                  best=best["source"], per_level=per_level,
                  final={k: {"psnr": v["psnr"], "per_level": v["per_level"]} for k, v in finals.items()},
                  total_seconds=time.monotonic() - START, finished_utc=_common.utc_now())
    save()
    print(f"{args.task}: val PSNR {before['psnr']:.3f} -> {best['psnr']:.3f} dB ({best['source']}), "
          f"{step} steps, {record['patches_per_s']:.1f} patches/s; wrote {out / 'sprint.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
