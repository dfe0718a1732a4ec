"""fine_tune from Python and `memnet train` from the command line, on folders of real pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import napari_memnet
from napari_memnet.cli import main
from napari_memnet.training import events as ev

TINY = {"blocks": 2, "recursions": 2, "channels": 8}


@pytest.fixture
def pair_folders(shared_data, tmp_path):
    """Noisy (float32 TIFF, sigma 25, unclipped) / clean (PNG) pairs matched by name, from real images."""
    import tifffile

    deg, cln = tmp_path / "noisy", tmp_path / "clean"
    deg.mkdir()
    cln.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted((shared_data / "train" / "Train400").glob("*.png"))[:4]:
        img = np.asarray(Image.open(path))[:96, :96]
        Image.fromarray(img).save(cln / path.name)
        noisy = img.astype(np.float32) / 255 + rng.normal(0, 25 / 255, img.shape).astype(np.float32)
        tifffile.imwrite(deg / f"{path.stem}.tif", noisy)
    return deg, cln


def test_fine_tune_api_saves_a_user_model_usable_at_once(pair_folders, tmp_path):
    seen = []
    model = napari_memnet.fine_tune(pairs=pair_folders, task="denoise", architecture=TINY, steps=12, batch_size=8,
                                    patch_size=24, lr=3e-3, name="my-denoiser", validation=1, callback=seen.append,
                                    threads=1, validate_every=12)
    assert model.name == "my-denoiser" and model.task == "denoise"
    assert isinstance(seen[0], ev.Started) and isinstance(seen[-1], ev.Finished)
    assert sum(isinstance(e, ev.Step) for e in seen) == 12
    listed = {m.name: m for m in napari_memnet.list_models()}
    assert listed["my-denoiser"].source == "user"
    card = napari_memnet.load_model("my-denoiser").card
    assert card["training"]["data"]["source"] == "pairs"
    assert card["training"]["data"]["train_images"] == 3 and card["training"]["data"]["validation_items"] == 1
    after = card["training"]["validation_psnr_after"]
    assert np.isfinite(after)
    # fine-tune the new model further: the "before" PSNR is the base model's PSNR on the same held-out pair
    tuned = napari_memnet.fine_tune(pairs=pair_folders, task="denoise", base_model="my-denoiser", steps=3,
                                    batch_size=8, patch_size=24, name="my-denoiser-2", validation=1, threads=1)
    assert tuned.card["base_model"] == "my-denoiser"
    assert tuned.card["training"]["validation_psnr_before"] == pytest.approx(after, abs=1e-4)
    assert tuned.card["config"] == card["config"]


def test_fine_tune_result_restores_an_image(pair_folders):
    inference = pytest.importorskip("napari_memnet.api")
    napari_memnet.fine_tune(pairs=pair_folders, task="denoise", architecture=TINY, steps=2, batch_size=4,
                            patch_size=24, name="quick", validation=1, threads=1)
    noisy = np.asarray(Image.open(next(pair_folders[1].iterdir())), np.float32) / 255
    out = inference.restore(noisy, "denoise", model="quick", device="cpu")
    assert out.shape == noisy.shape and np.isfinite(out).all()


def test_bad_pairs_are_refused_before_any_step(pair_folders, tmp_path):
    deg, cln = pair_folders
    first = sorted(deg.iterdir())[0]
    Image.fromarray(np.zeros((50, 70), np.uint8)).save(deg / "extra.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(cln / f"{first.stem}.png")  # now mismatched in shape
    seen = []
    out = tmp_path / "run"
    with pytest.raises(ValueError) as err:
        napari_memnet.fine_tune(pairs=(deg, cln), task="denoise", architecture=TINY, steps=5, name="bad",
                                callback=seen.append, out_dir=out)
    assert "extra.png" in str(err.value) and first.stem in str(err.value)
    assert seen == [] and not out.exists()
    assert "bad" not in {m.name for m in napari_memnet.list_models()}


def test_cli_train_on_pair_folders_with_json_events(pair_folders, tmp_path, capsys):
    out = tmp_path / "cli-run"
    argv = ["train", "--task", "denoise", "--pairs", str(pair_folders[0]), str(pair_folders[1]), "--blocks", "2",
            "--recursions", "2", "--channels", "8", "--steps", "4", "--batch", "4", "--patch", "24",
            "--out-dir", str(out), "--name", "cli-denoiser", "--val-count", "1", "--threads", "1",
            "--checkpoint-every", "2", "--log-every", "1", "--json"]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in printed]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("step") == 4
    assert kinds.count("checkpoint") == 2
    logged = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == kinds
    card = json.loads((out / "cli-denoiser.json").read_text())
    assert card["metrics"] and card["training"]["steps"] == 4
    # a second run into the same folder needs --resume; with it, more steps continue the run
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and str(out / "cli-denoiser.safetensors") in err
    assert main([*argv[:argv.index("--steps") + 1], "6", *argv[argv.index("--steps") + 2:], "--resume"]) == 0
    resumed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert resumed[0]["resumed"] and [e["step"] for e in resumed if e["event"] == "step"] == [5, 6]
    # --overwrite starts over in the same folder, replacing the run and its model once the new model is saved
    assert main([*argv, "--overwrite"]) == 0
    fresh = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not fresh[0]["resumed"] and [e["step"] for e in fresh if e["event"] == "step"] == [1, 2, 3, 4]
    assert [e["step"] for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())
            if e["event"] == "step"] == [1, 2, 3, 4]


def test_cli_refuses_bad_data_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--task", "sr", "--clean-dir", str(empty), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no images found" in err and str(empty) in err


def test_cli_explicit_validation_pairs(pair_folders, tmp_path, capsys):
    import shutil

    deg, cln = pair_folders
    vdeg, vcln = tmp_path / "val_noisy", tmp_path / "val_clean"
    vdeg.mkdir()
    vcln.mkdir()
    held = sorted(cln.iterdir())[0]
    shutil.move(str(held), vcln / held.name)
    shutil.move(str(deg / f"{held.stem}.tif"), vdeg / f"{held.stem}.tif")
    out = tmp_path / "run"
    argv = ["train", "--task", "denoise", "--pairs", str(deg), str(cln), "--val-pairs", str(vdeg), str(vcln),
            "--blocks", "1", "--recursions", "1", "--channels", "8", "--steps", "2", "--batch", "2", "--patch", "24",
            "--out-dir", str(out), "--name", "vp", "--threads", "1", "--json"]
    assert main(argv) == 0
    started = json.loads(capsys.readouterr().out.splitlines()[0])
    assert started["train_images"] == 3 and started["val_items"] == 1
    card = json.loads((out / "vp.json").read_text())
    assert card["training"]["data"]["validation_images"] == [held.stem]
    # one folder is not a validation set for pairs
    assert main([*argv[:argv.index("--val-pairs")], *argv[argv.index("--val-pairs") + 3:], "--val-dir", str(vcln),
                 "--out-dir", str(tmp_path / "run2")]) == 2
    assert "validation for real pairs must be pairs" in capsys.readouterr().err


def test_cli_train_from_a_toml_config_with_flag_overrides(shared_data, tmp_path, capsys):
    images = sorted((shared_data / "train" / "T91").glob("*.png"))[:3]
    folder = tmp_path / "clean"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    config = tmp_path / "run.toml"
    config.write_text(f'task = "deblock"\nlevels = [10, 30]\nclean_dir = "{folder}"\nsteps = 50\nbatch_size = 2\n'
                      f'val_count = 1\nval_crop = 48\nthreads = 1\nname = "toml-model"\n'
                      f'[arch]\nblocks = 1\nrecursions = 1\nchannels = 8\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--steps", "3", "--out-dir", str(out), "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 3
    card = json.loads((out / "toml-model.json").read_text())
    assert card["task"] == "deblock" and card["levels"] == {"jpeg_quality_range": [10, 30]}
    assert card["config"]["blocks"] == 1 and card["training"]["config"]["steps"] == 3
    assert {m["level"] for m in card["metrics"]} == {"10", "20", "30"}


SMALL = {"blocks": 1, "recursions": 1, "channels": 8}


def _small_run(pair_folders, **kwargs):
    """Tiny MemNet M1R1 C8 runs on the real pairs (the test's own user model folder)."""
    return dict(pairs=pair_folders, task="denoise", architecture=SMALL, batch_size=2, patch_size=24,
                validation=1, threads=1, **kwargs)


def _run_files(name):
    """The checkpoint, log and model files of fine_tune's default run folder for ``name``."""
    from napari_memnet.models.files import user_models_dir

    run = user_models_dir() / "runs" / name
    return {"checkpoint": run / "checkpoint.safetensors", "events": run / "events.jsonl",
            "weights": user_models_dir() / f"{name}.safetensors", "card": user_models_dir() / f"{name}.json"}


def _contents(files):
    return {key: path.read_bytes() for key, path in files.items()}


def test_fine_tune_again_under_the_same_name_is_refused_then_resumes_or_overwrites(pair_folders):
    kwargs = _small_run(pair_folders, name="again", log_every=1)
    napari_memnet.fine_tune(steps=3, **kwargs)
    files = _run_files("again")
    first = _contents(files)
    seen = []
    with pytest.raises(ValueError) as err:  # refused before any step: nothing of the first run is touched
        napari_memnet.fine_tune(steps=2, callback=seen.append, **kwargs)
    message = str(err.value)
    assert str(files["checkpoint"]) in message and str(files["weights"]) in message
    assert "resume=True" in message and "overwrite=True" in message and "another name" in message
    assert seen == [] and _contents(files) == first
    # resume continues the run from its checkpoint
    resumed = napari_memnet.fine_tune(steps=5, resume=True, callback=seen.append, **kwargs)
    assert seen[0].resumed and [e.step for e in seen if isinstance(e, ev.Step)] == [4, 5]
    assert resumed.card["training"]["steps"] == 5
    # overwrite starts a new run that replaces the old run and model
    seen.clear()
    new = napari_memnet.fine_tune(steps=2, overwrite=True, callback=seen.append, **kwargs)
    assert not seen[0].resumed and [e.step for e in seen if isinstance(e, ev.Step)] == [1, 2]
    assert new.card["training"]["steps"] == 2
    from napari_memnet.training.checkpoint import read_checkpoint

    assert read_checkpoint(files["checkpoint"])[1]["step"] == 2
    logged = [json.loads(line) for line in files["events"].read_text().splitlines()]
    assert [e["step"] for e in logged if e["event"] == "step"] == [1, 2]  # the new run's log only
    assert not (files["checkpoint"].parent / "new-run").exists()


def test_an_existing_model_without_its_run_is_refused_too(pair_folders, tmp_path):
    from napari_memnet._widgets.train_controller import refuse_replacing

    napari_memnet.fine_tune(steps=1, out_dir=tmp_path / "elsewhere", **_small_run(pair_folders, name="kept"))
    weights = _run_files("kept")["weights"]
    before = weights.read_bytes()
    fresh = tmp_path / "fresh-run"
    for resume in (False, True):  # nothing to resume in a fresh out_dir: resume must not replace the model
        with pytest.raises(ValueError) as err:
            napari_memnet.fine_tune(steps=1, out_dir=fresh, resume=resume, **_small_run(pair_folders, name="kept"))
        assert str(weights) in str(err.value) and "overwrite=True" in str(err.value)
        assert f"no checkpoint in {fresh}" in str(err.value)
    assert weights.read_bytes() == before and not fresh.exists()
    # the Train widget applies the same rule to its run folder (it offers no overwrite)
    with pytest.raises(ValueError, match="choose another 'save as' name"):
        refuse_replacing({"name": "kept", "out_dir": str(fresh)}, resume=False)
    refuse_replacing({"name": "not-yet", "out_dir": str(fresh)}, resume=False)


def test_overwrite_replaces_the_old_run_only_once_the_new_model_is_saved(pair_folders):
    kwargs = _small_run(pair_folders, name="precious", checkpoint_every=1, validate_every=100)
    napari_memnet.fine_tune(steps=3, **kwargs)
    files = _run_files("precious")
    old = _contents(files)
    staged = files["checkpoint"].parent / "new-run" / "checkpoint.safetensors"

    # 1. the caller crashes at step 4 of an overwriting run that checkpoints every step
    class Crash(Exception):
        pass

    intact = []

    def crash_at_4(event):
        intact.append(_contents(files) == old)
        if isinstance(event, ev.Step) and event.step == 4:
            raise Crash

    with pytest.raises(Crash):
        napari_memnet.fine_tune(steps=8, overwrite=True, callback=crash_at_4, **kwargs)
    assert intact and all(intact)
    assert _contents(files) == old  # the old checkpoint, log and model are as they were
    from napari_memnet.training.checkpoint import read_checkpoint

    assert read_checkpoint(staged)[1]["step"] == 3  # the new run's own checkpoints went beside them
    assert napari_memnet.load_model("precious").card["training"]["steps"] == 3

    # 2. a stopped overwriting run: the old files stay until its model is saved, then it replaces them
    import threading

    stop = threading.Event()
    states = []

    def stop_at_2(event):
        states.append((type(event).__name__, _contents(files) == old))
        if isinstance(event, ev.Step) and event.step == 2:
            stop.set()

    new = napari_memnet.fine_tune(steps=8, overwrite=True, stop=stop, callback=stop_at_2, **kwargs)
    assert states[-1] == ("Finished", False) and all(same for _, same in states[:-1])
    assert new.card["training"]["steps"] == 2 and napari_memnet.load_model("precious").card["training"]["steps"] == 2
    assert read_checkpoint(files["checkpoint"])[1]["step"] == 2 and not staged.parent.exists()


def test_bundled_model_names_are_never_given_to_user_models(pair_folders, tmp_path, capsys):
    from napari_memnet.core.tasks import DEFAULT_MODELS

    name = DEFAULT_MODELS["denoise"]
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="bundled model"):
            napari_memnet.fine_tune(steps=1, overwrite=overwrite, **_small_run(pair_folders, name=name))
    assert not _run_files(name)["weights"].exists()
    argv = ["train", "--task", "denoise", "--pairs", str(pair_folders[0]), str(pair_folders[1]), *"--blocks 1 "
            "--recursions 1 --channels 8 --steps 1 --batch 2 --patch 24 --val-count 1 --threads 1".split(),
            "--out-dir", str(tmp_path / "run"), "--name", name]
    assert main([*argv, "--install", "--overwrite"]) == 2
    assert "bundled model" in capsys.readouterr().err
    assert main([*argv, "--json"]) == 0  # a plain output folder may hold a model of that name (how they are made)
    assert (tmp_path / "run" / f"{name}.safetensors").exists()


# ------------------------------------------------------------------------- intensities of arrays
@pytest.fixture
def uint16_pairs(shared_data):
    """Three microscopy-like uint16 (noisy, clean) array pairs from real images: clean on 200..3000, sigma 150."""
    rng = np.random.default_rng(4)
    pairs = []
    for path in sorted((shared_data / "train" / "Train400").glob("*.png"))[:3]:
        img = np.asarray(Image.open(path))[:64, :64]
        clean = np.round(200 + img.astype(np.float64) / 255 * 2800).astype(np.uint16)
        noisy = np.clip(np.round(clean + rng.normal(0, 150, clean.shape)), 0, 65535).astype(np.uint16)
        pairs.append((noisy, clean))
    return pairs


def test_fine_tune_on_uint16_arrays_trains_on_restores_scale_and_restores_uint16(uint16_pairs):
    from napari_memnet.core.intensity import choose_intensity
    from napari_memnet.core.metrics import psnr

    copies = [(n.copy(), c.copy()) for n, c in uint16_pairs]
    model = napari_memnet.fine_tune(pairs=uint16_pairs[:2], validation=uint16_pairs[2:], task="denoise",
                                    architecture=SMALL, steps=3, batch_size=4, patch_size=24, name="u16-arrays",
                                    threads=1, validate_every=3)
    for (n, c), (n0, c0) in zip(uint16_pairs, copies):  # inputs never modified
        np.testing.assert_array_equal(n, n0)
        np.testing.assert_array_equal(c, c0)
    # the held-out pair was seen on restore's scale: the map restore chooses for its degraded array
    v_noisy, v_clean = uint16_pairs[2]
    imap = choose_intensity(v_noisy)
    assert imap.mode == "percentile"
    expected = psnr(imap.forward(v_noisy), imap.forward(v_clean))
    assert model.card["training"]["validation_input_psnr"] == pytest.approx(expected, abs=1e-3)
    old_rule = psnr(v_noisy / 65535.0, v_clean / 65535.0)  # integers / dtype max, the rule before
    assert old_rule - expected > 20
    out = napari_memnet.restore(v_noisy, "denoise", model="u16-arrays", device="cpu")
    assert out.dtype == np.uint16 and out.shape == v_noisy.shape
    lo, hi = np.percentile(v_noisy, [1, 99])
    assert lo <= np.median(out) <= hi  # in the input's range, not near zero


def test_fine_tune_intensity_option_is_checked_before_any_step(uint16_pairs, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"intensity='as-is' takes float arrays on 0\.\.1 \(or uint8\), got uint16"):
        napari_memnet.fine_tune(pairs=uint16_pairs, task="denoise", architecture=SMALL, steps=1, name="as-is-16",
                                intensity="as-is", out_dir=out)
    with pytest.raises(ValueError, match="intensity must be 'restore'"):
        napari_memnet.fine_tune(pairs=uint16_pairs, task="denoise", architecture=SMALL, steps=1, name="bad-rule",
                                intensity="percentile", out_dir=out)
    assert not out.exists()
    assert not {"as-is-16", "bad-rule"} & {m.name for m in napari_memnet.list_models()}
