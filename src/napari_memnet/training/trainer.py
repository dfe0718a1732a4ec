"""The training loop as a generator of typed events (``events.py``).

    trainer = Trainer(config, clean="Train400/")     # data checked here: ValueError before any step
    for event in trainer.run():                       # Started, Step..., Validation, CheckpointSaved,
        ...                                           # BatchNormRecalibrated, Validation, Finished
    trainer.request_stop()                            # from any thread: ends after the current step

Nothing here touches Qt; the napari widget, the CLI and scripts consume the
same stream. A stop request ends cleanly: a checkpoint and a usable model are
saved. A failure during training yields ``Failed`` (and is kept in
``trainer.error``); the generator then ends.

Existing work is never replaced by accident (``runs.check_outputs``, the one
rule for ``fine_tune``, ``memnet train`` and the Train widget; ``runs`` holds
the run-folder policy); an overwriting run trains in ``OUT_DIR/new-run/`` and
moves its checkpoint and ``events.jsonl`` (``events.EventLog``) over the old
ones only after its model is saved.

A run ends (after its last step, or a stop request) by re-estimating the
network's BatchNorm running statistics over ``config.recalibrate_batches``
fresh training batches (``recalibrate``; networks without BatchNorm skip it),
then validates and saves the model. The last checkpoint is written BEFORE the
recalibration and holds the raw training state (a resumed run continues
exactly); the saved model file holds the recalibrated statistics, and the final
``Validation``/``Finished`` PSNR and the card's metrics are the saved model's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..core.devices import resolve_device, resolve_precision, use_channels_last
from ..core.seeding import seeded_torch
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TrainingData, prepare_data
from .ema import WeightAverage
from .losses import supervised_loss
from .card import card_record, level_card
from .bn_calibration import batchnorm_layers, freeze_batchnorm, recalibrate_batchnorm
from .initial import initial_network
from .events import (
    EVENTS_NAME,
    BatchNormRecalibrated,
    BestModelSaved,
    CheckpointSaved,
    EventLog,
    Failed,
    Finished,
    Started,
    Step,
    TrainingEvent,
    Validation,
)
from .runs import BEST_DIR, NEW_RUN_DIR, check_outputs, replace_old_run
from .sampler import PatchSampler, crop_size

# the recalibration batches come from a sampler of their own, seeded config.seed + this: the training
# sampler's generators (which a resumed run continues) are never drawn from
RECALIBRATION_SEED_OFFSET = 1_000_003


class Trainer:
    """One training run. Construction loads and checks the data and builds (or resumes) the model.

    ``clean``/``pairs``/``validation``/``intensity`` as in ``data.prepare_data`` (or ``data=`` an already prepared
    ``TrainingData``). With ``config.out_dir`` set, an existing checkpoint there is continued when
    ``resume`` is true, replaced (once the new model is saved) when ``overwrite`` is true, and refused
    (ValueError, before the data is read) otherwise; ``resume`` without a checkpoint starts a new run.
    An existing model of the same name in the model folder is refused unless ``overwrite`` (or
    ``resume`` with the run's checkpoint) is given (``check_outputs``).
    ``stop``: a ``threading.Event`` that ends the run after the current step (``request_stop()``
    sets it)."""

    def __init__(self, config: TrainConfig, *, clean=None, pairs=None, validation=None,
                 data: TrainingData | None = None, resume: bool = False, stop: threading.Event | None = None,
                 overwrite: bool = False, intensity: str = "restore"):
        self.config = cfg = config
        check_outputs(cfg, resume=resume, overwrite=overwrite)
        self.stop_event = stop if stop is not None else threading.Event()
        self.error: BaseException | None = None
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device, training=True, from_model=bool(cfg.init))
        self.channels_last = use_channels_last(self.device, cfg.channels_last)
        pairs_given = pairs is not None or bool(cfg.pairs_input_dir)
        need = crop_size(cfg.task, cfg.patch_size, cfg.levels, pairs_given)
        self.data = data if data is not None else prepare_data(cfg, clean, pairs, validation, min_size=need,
                                                               intensity=intensity)
        with seeded_torch(cfg.seed):  # the initial weights are the seed's; the caller's random state stays
            net, self.base_model_name = initial_network(cfg)  # fresh, a model's or another run's (initial.py)
        self.net = net.train()
        self.net.to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net) if cfg.compile else self.net
        self.optimizer = self._build_optimizer()
        self.sampler = PatchSampler(self.data.train, cfg.task, cfg.levels, cfg.patch_size, cfg.seed, self.device)
        self.step = 0
        self.history: dict = {"base_model_psnr": None, "baseline_psnr": None, "last": None}
        self.recalibration: dict | None = None  # what recalibrate() did (the card's training record)
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        self.resumed = False
        self.started_at = time.perf_counter()  # (re)set when run() starts: the cards' "seconds" count from it
        self.overwrite = overwrite
        self.ema = WeightAverage(self.net, cfg.ema) if cfg.ema else None
        self.frozen_batchnorm = bool(cfg.freeze_batchnorm)  # (self_supervised.py: on by default from a model)
        ckpt = self.checkpoint_path
        if resume and ckpt is not None and ckpt.exists():
            meta = load_checkpoint(ckpt, model=self.net, optimizer=self.optimizer, sampler=self.sampler,
                                   ema=self.ema)
            self.step = int(meta["step"])
            self.history.update(meta.get("extra", {}).get("history", {}))
            self.base_model_name = meta.get("extra", {}).get("base_model", self.base_model_name)
            self.resumed = True
        # a new run over an existing one writes beside it until its model is saved (see _replace_old_run)
        old = self.out_dir is not None and any((self.out_dir / n).exists() for n in (CHECKPOINT_NAME, EVENTS_NAME))
        self.staging = self.out_dir / NEW_RUN_DIR if old and overwrite and not self.resumed else None
        self.work_dir = self.staging or self.out_dir

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self):
        cfg = self.config
        params = [p for p in self.net.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.resolved_lr, momentum=cfg.momentum, weight_decay=cfg.resolved_weight_decay)
        return torch.optim.Adam(params, lr=cfg.resolved_lr, weight_decay=cfg.resolved_weight_decay)

    @property
    def checkpoint_path(self) -> Path | None:
        """The run's checkpoint in ``out_dir`` (an overwriting run writes ``NEW_RUN_DIR`` first)."""
        return Path(self.config.out_dir) / CHECKPOINT_NAME if self.config.out_dir else None

    @property
    def multi_supervised(self) -> bool:
        return bool(self.config.multi_supervised and getattr(self.net.config, "multi_supervised", False))

    def request_stop(self) -> None:
        """End after the current step; a checkpoint and the model are saved."""
        self.stop_event.set()

    @property
    def model_network(self):
        """The network that is validated and saved: the weight average with ``config.ema``, else the trained one."""
        return self.ema.network if self.ema is not None else self.net

    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def outputs(self, inp):
        """(final output, branch outputs or None) of the trained network (``forward``)."""
        return self.forward(inp, return_branches=True) if self.multi_supervised else (self.forward(inp), None)

    def loss(self, inp, tgt):
        """(loss, branch losses) of a batch against its clean target (self_supervised.py: noisy alone)."""
        return supervised_loss(self.config.loss, *self.outputs(inp), tgt)

    def train_step(self) -> dict:
        """One optimisation step; returns the numbers a Step event reports."""
        cfg = self.config
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.frozen_batchnorm:
            freeze_batchnorm(self.net)
        inp, tgt, _levels = self.sampler.batch(cfg.batch_size)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss, branch_losses = self.loss(inp, tgt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.resolved_clip)
        loss_value = float(loss.detach())
        if not np.isfinite(loss_value):
            raise FloatingPointError(
                f"the loss became {loss_value} at step {self.step + 1}: lower the learning rate ({lr:g}) or the gradient clip")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net)
        self.step += 1
        weights = getattr(self.net, "branch_weights", None)
        return {"loss": loss_value, "branch_losses": [float(b.detach()) for b in branch_losses],
                "branch_weights": [] if weights is None else [float(w) for w in weights.detach().cpu()],
                "lr": lr, "grad_norm": float(grad_norm)}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> Validation:
        """PSNR of the current model on the fixed validation items (eval mode, fp32)."""
        from ..core.metrics import psnr

        t0 = time.perf_counter()
        items = self.data.val
        net = self.model_network
        was_training = net.training
        net.eval()
        per_level: dict = {}
        model_vals, base_vals = [], []
        try:
            for it in items:
                x = torch.from_numpy(np.ascontiguousarray(it.input, np.float32))[None, None].to(self.device)
                y = net(x)[0, 0].float().cpu().numpy()
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
            net.train(was_training)
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

    # ------------------------------------------------------------------ BatchNorm statistics
    @property
    def recalibrates(self) -> bool:
        """Whether the run ends with ``recalibrate`` (``recalibrate_batches`` > 0, BatchNorm in the network, not frozen)."""
        return self.config.recalibrate_batches > 0 and bool(batchnorm_layers(self.net)) and not self.frozen_batchnorm

    def recalibrate(self) -> BatchNormRecalibrated | None:
        """Set every BatchNorm's running statistics to their average over ``recalibrate_batches`` fresh
        training batches (``bn_calibration.recalibrate_batchnorm``; weights untouched). ``None`` when off
        or when the network has no BatchNorm.

        The batches are drawn like training batches (same images, degradations, levels, patch and batch
        size, device, memory format) by a separate ``PatchSampler`` seeded ``seed + RECALIBRATION_SEED_OFFSET``,
        so the training sampler's state, which a checkpoint saves and a resumed run continues, is not
        touched, and the result depends only on the trained weights and the config. fp32, like validation."""
        cfg = self.config
        net = self.model_network
        layers = batchnorm_layers(net)
        if cfg.recalibrate_batches <= 0 or not layers:
            return None
        t0 = time.perf_counter()
        seed = cfg.seed + RECALIBRATION_SEED_OFFSET
        sampler = PatchSampler(self.data.train, cfg.task, cfg.levels, cfg.patch_size, seed, self.device)

        def batches():
            for _ in range(cfg.recalibrate_batches):
                inp = sampler.batch(cfg.batch_size)[0]
                yield inp.contiguous(memory_format=torch.channels_last) if self.channels_last else inp

        was_training = net.training
        try:
            count = recalibrate_batchnorm(net, batches())
        finally:
            net.train(was_training)
        self.recalibration = {"step": self.step, "batches": count, "batch_size": cfg.batch_size,
                              "patch_size": cfg.patch_size, "seed": seed, "layers": len(layers)}
        return BatchNormRecalibrated(self.step, count, cfg.batch_size, len(layers), time.perf_counter() - t0)

    # ------------------------------------------------------------------ saving
    def save_if_best(self, validation: Validation) -> BestModelSaved | None:
        """Save the validated model to ``OUT_DIR/best/`` when it beats every earlier validation of the run."""
        best = self.history.get("best") or {}
        if self.work_dir is None or not np.isfinite(validation.psnr) or validation.psnr <= best.get("psnr", -np.inf):
            return None
        self.history["best"] = {"step": validation.step, "psnr": validation.psnr}
        info = self.save_final_model(time.perf_counter() - self.started_at, directory=self.work_dir / BEST_DIR)
        return BestModelSaved(validation.step, validation.psnr, str(info.path))

    def save_checkpoint(self) -> CheckpointSaved:
        t0 = time.perf_counter()
        path = save_checkpoint(self.work_dir / CHECKPOINT_NAME, model=self.net, optimizer=self.optimizer,
                               step=self.step, config=self.config.to_dict(), sampler=self.sampler,
                               extra={"history": self.history, "base_model": self.base_model_name}, ema=self.ema)
        return CheckpointSaved(self.step, str(path), time.perf_counter() - t0)

    def save_final_model(self, seconds: float, directory=None, name: str | None = None):
        """Save the model (``model_network``) with its card: in the model folder, or ``directory``."""
        from ..models.files import save_model

        cfg = self.config
        training, metrics = card_record(self, seconds)
        return save_model(self.model_network, name or cfg.name, task=cfg.task,
                          directory=cfg.model_dir if directory is None else directory,
                          levels=level_card(cfg.task, cfg.levels),
                          training=training, metrics=metrics, base_model=self.base_model_name,
                          description=f"{cfg.task} model trained with napari-memnet ({self.step} steps)")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[TrainingEvent]:
        """Train to ``config.steps`` (or a stop request), yielding events; log them to events.jsonl.

        ``config.threads`` sets torch's CPU threads (a setting of the whole process) while the run goes on;
        the caller's number is back when the run ends, fails or is closed."""
        log = EventLog(self.work_dir / EVENTS_NAME if self.work_dir else None, self.config.log_every,
                       append=self.resumed or not self.overwrite)
        callers_threads = torch.get_num_threads()
        if self.config.threads:
            torch.set_num_threads(int(self.config.threads))
        try:
            for event in self._run():
                log.write(event)
                if isinstance(event, Finished) and self.staging is not None:
                    log.close()  # the model is saved: now the new run replaces the old one
                    self._replace_old_run()
                yield event
        finally:
            log.close()
            torch.set_num_threads(callers_threads)

    def _replace_old_run(self) -> None:
        """Move the overwriting run's checkpoint and log from ``NEW_RUN_DIR`` over the old run's."""
        replace_old_run(self.staging, self.out_dir)
        self.staging, self.work_dir = None, self.out_dir

    def _run(self) -> Iterator[TrainingEvent]:
        cfg = self.config
        t_start = self.started_at = time.perf_counter()
        try:
            yield Started(self.step, cfg.steps, str(self.device), self.precision, self.parameters_count(),
                          len(self.data.train), len(self.data.val), self.resumed)
            if self.data.val and self.step == 0 and self.history["base_model_psnr"] is None:
                yield self.validate()
            self.net.train()
            step_time = None
            stopped = False
            recalibrates = self.recalibrates  # then the final validation comes after the recalibration
            deadline = t_start + 60.0 * cfg.minutes if cfg.minutes else None
            last_checkpoint = time.perf_counter()
            while self.step < cfg.steps:
                if self.stop_event.is_set() or (deadline is not None and time.perf_counter() >= deadline):
                    stopped = True
                    break
                t0 = time.perf_counter()
                numbers = self.train_step()
                dt = time.perf_counter() - t0
                step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
                yield Step(self.step, cfg.steps, patches_per_s=cfg.batch_size / step_time,
                           eta_s=step_time * (cfg.steps - self.step), **numbers)
                last = self.step == cfg.steps
                if self.data.val and (self.step % cfg.validate_every == 0 or last) and not (last and recalibrates):
                    validation = self.validate()
                    yield validation
                    best = self.save_if_best(validation)
                    if best is not None:
                        yield best
                overdue = time.perf_counter() - last_checkpoint >= 60.0 * cfg.checkpoint_minutes
                if self.work_dir and (self.step % cfg.checkpoint_every == 0 or last or overdue):
                    yield self.save_checkpoint()
                    last_checkpoint = time.perf_counter()
            if stopped:
                if self.data.val and not recalibrates:
                    yield self.validate()
                if self.work_dir:
                    yield self.save_checkpoint()
            if recalibrates:  # the checkpoint above keeps the raw training state; the model gets these
                yield self.recalibrate()
                if self.data.val:
                    yield self.validate()
            info = self.save_final_model(time.perf_counter() - t_start)
            last = self.history.get("last") or {}
            yield Finished(self.step, cfg.steps, stopped, info.name, str(info.path), last.get("psnr"),
                           self.history.get("baseline_psnr"), self.history.get("base_model_psnr"),
                           time.perf_counter() - t_start)
        except Exception as exc:  # reported as an event; the caller decides whether to raise
            self.error = exc
            yield Failed(self.step, f"{type(exc).__name__}: {exc}")
