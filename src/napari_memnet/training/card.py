"""What a trained model's card records about its training, from the trainer's state."""

from __future__ import annotations


def level_card(task: str, levels) -> dict:
    from ..core.tasks import get_task

    return {get_task(task).card_levels_key: list(levels)}


def card_record(trainer, seconds: float) -> tuple[dict, list]:
    """(``training``, ``metrics``) of the card of ``trainer``'s model: the run's settings, data and
    validation (the last one, per level, beside the degraded input and the model it started from)."""
    cfg = trainer.config
    history = trainer.history
    last = history.get("last") or {}
    metrics = []
    for level, v in (last.get("per_level") or {}).items():
        base_lv = (history.get("base_model_per_level") or {}).get(level, {})
        metrics.append({"dataset": "validation (held-out images)", "level": level, "psnr": round(v["psnr"], 4),
                        "input_psnr": round(v["baseline_psnr"], 4), "before_psnr": base_lv.get("psnr"),
                        "items": v["items"], "step": last.get("step")})
    training = {"steps": trainer.step, "planned_steps": cfg.steps, "data": trainer.data.summary(),
                "config": cfg.to_dict(), "device": str(trainer.device), "precision": trainer.precision,
                "seconds": round(seconds, 3), "validation_psnr_before": history.get("base_model_psnr"),
                "validation_psnr_after": last.get("psnr"), "validation_input_psnr": history.get("baseline_psnr")}
    if trainer.recalibration is not None:
        training["batchnorm_recalibration"] = trainer.recalibration
    if cfg.ema:
        training["ema_decay"] = cfg.ema
    return training, metrics
