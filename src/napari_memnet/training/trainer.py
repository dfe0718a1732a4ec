"""The training loop as a generator of typed events (``events.py``).

    trainer = Trainer(config, clean="Train400/")     # data checked here: ValueError before any step
    for event in trainer.run():                       # Started, Step..., Validation, CheckpointSaved, Finished
        ...
    trainer.request_stop()                            # from any thread: ends after the current step

Nothing here touches Qt; the napari widget, the CLI and scripts consume the
same stream. A stop request ends cleanly: a checkpoint and a usable model are
saved. A failure during training yields ``Failed`` (and is kept in
``trainer.error``); the generator then ends.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TrainingData, prepare_data
from .events import CheckpointSaved, Failed, Finished, Started, Step, TrainingEvent, Validation
from .sampler import PatchSampler, crop_size

EVENTS_NAME = "events.jsonl"


def resolve_device(name: str = "auto") -> torch.device:
    try:
        from ..devices import resolve_device as _resolve
    except ImportError:
        _resolve = None
    if _resolve is not None:
        return _resolve(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def level_card(task: str, levels) -> dict:
    key = {"denoise": "sigma_range", "sr": "scales", "deblock": "jpeg_quality_range"}[task]
    return {key: list(levels)}


class Trainer:
    """One training run. Construction loads and checks the data and builds (or resumes) the model.

    ``clean``/``pairs``/``validation`` as in ``data.prepare_data`` (or ``data=`` an already prepared
    ``TrainingData``). With ``config.out_dir`` set, an existing checkpoint there is continued when
    ``resume`` is true, replaced when ``overwrite`` is true, and refused (ValueError) otherwise;
    ``resume`` without a checkpoint starts a new run. ``stop``: a ``threading.Event`` that ends the
    run after the current step (``request_stop()`` sets it)."""

    def __init__(self, config: TrainConfig, *, clean=None, pairs=None, validation=None,
                 data: TrainingData | None = None, resume: bool = False, stop: threading.Event | None = None,
                 overwrite: bool = False):
        self.config = cfg = config
        self.stop_event = stop if stop is not None else threading.Event()
        self.error: BaseException | None = None
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.device = resolve_device(cfg.device)
        self.precision = cfg.precision if cfg.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type in ("cuda", "cpu")
        pairs_given = pairs is not None or bool(cfg.pairs_input_dir)
        need = crop_size(cfg.task, cfg.patch_size, cfg.levels, pairs_given)
        self.data = data if data is not None else prepare_data(cfg, clean, pairs, validation, min_size=need)
        seed_everything(cfg.seed)
        self.base_model_name = None
        self.net = self._build_network()
        self.net.to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net) if cfg.compile else self.net
        self.optimizer = self._build_optimizer()
        self.sampler = PatchSampler(self.data.train, cfg.task, cfg.levels, cfg.patch_size, cfg.seed, self.device)
        self.step = 0
        self.history: dict = {"base_model_psnr": None, "baseline_psnr": None, "last": None}
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        self.resumed = False
        self.overwrite = overwrite
        ckpt = self.checkpoint_path
        if ckpt is not None and ckpt.exists() and (resume or not overwrite):
            if not resume and not overwrite:
                raise ValueError(f"{ckpt} already exists: pass resume=True (--resume) to continue that run, or use another out_dir")
            meta = load_checkpoint(ckpt, model=self.net, optimizer=self.optimizer, sampler=self.sampler)
            self.step = int(meta["step"])
            self.history.update(meta.get("extra", {}).get("history", {}))
            self.base_model_name = meta.get("extra", {}).get("base_model", self.base_model_name)
            self.resumed = True

    # ------------------------------------------------------------------ setup
    def _build_network(self):
        from ..models import build_model

        cfg = self.config
        if cfg.init:
            from ..modelfile import load_model

            loaded = load_model(cfg.init)
            self.base_model_name = loaded.name
            net = loaded.network
            if net.in_channels != 1:
                raise ValueError(f"base model {cfg.init!r} has {net.in_channels} input channels; training uses 1 (gray / Y)")
            return net.train()
        return build_model(cfg.architecture, cfg.resolved_arch).train()

    def _build_optimizer(self):
        cfg = self.config
        params = [p for p in self.net.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.resolved_lr, momentum=cfg.momentum, weight_decay=cfg.resolved_weight_decay)
        return torch.optim.Adam(params, lr=cfg.resolved_lr, weight_decay=cfg.resolved_weight_decay)

    @property
    def checkpoint_path(self) -> Path | None:
        return Path(self.config.out_dir) / CHECKPOINT_NAME if self.config.out_dir else None

    @property
    def multi_supervised(self) -> bool:
        return bool(self.config.multi_supervised and getattr(self.net.config, "multi_supervised", False))

    def request_stop(self) -> None:
        """End after the current step; a checkpoint and the model are saved."""
        self.stop_event.set()

    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self) -> dict:
        """One optimisation step; returns the numbers a Step event reports."""
        from ..models import euclidean_loss, multi_supervised_loss

        cfg = self.config
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        inp, tgt, _levels = self.sampler.batch(cfg.batch_size)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            if self.multi_supervised:
                final, branches = self.forward(inp, return_branches=True)
                loss, branch_losses = multi_supervised_loss(final, branches, tgt)
            else:
                loss, branch_losses = euclidean_loss(self.forward(inp), tgt), []
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.resolved_clip)
        loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise FloatingPointError(
                f"the loss became {loss_value} at step {self.step + 1}: lower the learning rate ({lr:g}) or the gradient clip")
        self.optimizer.step()
        self.step += 1
        weights = getattr(self.net, "branch_weights", None)
        return {"loss": loss_value, "branch_losses": [float(b.detach()) for b in branch_losses],
                "branch_weights": [] if weights is None else [float(w) for w in weights.detach().cpu()],
                "lr": lr, "grad_norm": float(grad_norm)}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> Validation:
        """PSNR of the current model on the fixed validation items (eval mode, fp32)."""
        from ..metrics import psnr

        t0 = time.perf_counter()
        items = self.data.val
        was_training = self.net.training
        self.net.eval()
        per_level: dict = {}
        model_vals, base_vals = [], []
        try:
            for it in items:
                x = torch.from_numpy(np.ascontiguousarray(it.input, np.float32))[None, None].to(self.device)
                y = self.net(x)[0, 0].float().cpu().numpy()
                if self.config.task != "denoise":
                    y = np.clip(y, 0.0, 1.0)
                p = float(psnr(y, it.target, shave=it.shave))
                b = float(psnr(it.input, it.target, shave=it.shave))
                model_vals.append(p)
                base_vals.append(b)
                entry = per_level.setdefault(str(it.level), {"psnr": [], "baseline_psnr": []})
                entry["psnr"].append(p)
                entry["baseline_psnr"].append(b)
        finally:
            self.net.train(was_training)
        per_level = {k: {"psnr": float(np.mean(v["psnr"])), "baseline_psnr": float(np.mean(v["baseline_psnr"])),
                         "items": len(v["psnr"])} for k, v in per_level.items()}
        mean = float(np.mean(model_vals)) if model_vals else float("nan")
        base = float(np.mean(base_vals)) if base_vals else float("nan")
        if self.history["base_model_psnr"] is None and self.step == 0:
            self.history["base_model_psnr"] = mean
            self.history["base_model_per_level"] = per_level
        self.history["baseline_psnr"] = base
        self.history["last"] = {"step": self.step, "psnr": mean, "per_level": per_level}
        return Validation(self.step, mean, base, self.history["base_model_psnr"], per_level, time.perf_counter() - t0)

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self) -> CheckpointSaved:
        t0 = time.perf_counter()
        path = save_checkpoint(self.checkpoint_path, model=self.net, optimizer=self.optimizer, step=self.step,
                               config=self.config.to_dict(), sampler=self.sampler,
                               extra={"history": self.history, "base_model": self.base_model_name})
        return CheckpointSaved(self.step, str(path), time.perf_counter() - t0)

    def save_final_model(self, seconds: float):
        from ..modelfile import save_model

        cfg = self.config
        last = self.history.get("last") or {}
        metrics = []
        for level, v in (last.get("per_level") or {}).items():
            base_lv = (self.history.get("base_model_per_level") or {}).get(level, {})
            metrics.append({"dataset": "validation (held-out images)", "level": level, "psnr": round(v["psnr"], 4),
                            "input_psnr": round(v["baseline_psnr"], 4), "before_psnr": base_lv.get("psnr"),
                            "items": v["items"], "step": last.get("step")})
        training = {"steps": self.step, "planned_steps": cfg.steps, "data": self.data.summary(), "config": cfg.to_dict(),
                    "device": str(self.device), "precision": self.precision, "seconds": round(seconds, 1),
                    "validation_psnr_before": self.history.get("base_model_psnr"),
                    "validation_psnr_after": last.get("psnr"), "validation_input_psnr": self.history.get("baseline_psnr")}
        return save_model(self.net, cfg.name, task=cfg.task, directory=cfg.model_dir, levels=level_card(cfg.task, cfg.levels),
                          training=training, metrics=metrics, base_model=self.base_model_name,
                          description=f"{cfg.task} model trained with napari-memnet ({self.step} steps)")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[TrainingEvent]:
        """Train to ``config.steps`` (or a stop request), yielding events; log them to events.jsonl."""
        log = EventLog(self.out_dir / EVENTS_NAME if self.out_dir else None, self.config.log_every,
                       append=self.resumed or not self.overwrite)
        try:
            for event in self._run():
                log.write(event)
                yield event
        finally:
            log.close()

    def _run(self) -> Iterator[TrainingEvent]:
        cfg = self.config
        t_start = time.perf_counter()
        try:
            yield Started(self.step, cfg.steps, str(self.device), self.precision, self.parameters_count(),
                          len(self.data.train), len(self.data.val), self.resumed)
            if self.data.val and self.step == 0 and self.history["base_model_psnr"] is None:
                yield self.validate()
            self.net.train()
            step_time = None
            stopped = False
            while self.step < cfg.steps:
                if self.stop_event.is_set():
                    stopped = True
                    break
                t0 = time.perf_counter()
                numbers = self.train_step()
                dt = time.perf_counter() - t0
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                yield Step(self.step, cfg.steps, patches_per_s=cfg.batch_size / step_time,
                           eta_s=step_time * (cfg.steps - self.step), **numbers)
                last = self.step == cfg.steps
                if self.data.val and (self.step % cfg.validate_every == 0 or last):
                    yield self.validate()
                if self.checkpoint_path and (self.step % cfg.checkpoint_every == 0 or last):
                    yield self.save_checkpoint()
            if stopped:
                if self.data.val:
                    yield self.validate()
                if self.checkpoint_path:
                    yield self.save_checkpoint()
            info = self.save_final_model(time.perf_counter() - t_start)
            last = self.history.get("last") or {}
            yield Finished(self.step, cfg.steps, stopped, info.name, str(info.path), last.get("psnr"),
                           self.history.get("baseline_psnr"), self.history.get("base_model_psnr"),
                           time.perf_counter() - t_start)
        except Exception as exc:  # reported as an event; the caller decides whether to raise
            self.error = exc
            yield Failed(self.step, f"{type(exc).__name__}: {exc}")


class EventLog:
    """Appends events as JSON lines (Step events only every ``every``-th step)."""

    def __init__(self, path: Path | None, every: int = 1, append: bool = True):
        self.every = max(1, int(every))
        self.fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, event: TrainingEvent) -> None:
        if self.fh is None:
            return
        if isinstance(event, Step) and event.step % self.every and event.step != event.total:
            return
        self.fh.write(json.dumps({"time": round(time.time(), 3), **event.to_dict()}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
