"""The installable package: fast import, a core free of Qt/napari, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import napari_memnet
from napari_memnet.cli import main

from pathlib import Path

_PACKAGE = Path(napari_memnet.__file__).parent
# every module but the napari layer (_widgets/): core, models, restoration, training, api, commands...
CORE_MODULES = sorted(
    ".".join(("napari_memnet", *p.relative_to(_PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for p in _PACKAGE.rglob("*.py") if "_widgets" not in p.parts and p.name != "__main__.py")


def _run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_is_lazy_and_does_not_pull_torch():
    loaded = _run_python(
        "import sys, napari_memnet; print(sorted(m for m in ('torch','napari','qtpy','PyQt6') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_compute_core_imports_no_qt_and_no_napari():
    mods = ", ".join(repr(m) for m in CORE_MODULES)
    loaded = _run_python(
        f"import importlib, sys\nfor m in ({mods},): importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('napari','qtpy','PyQt6','PyQt5','PySide6','magicgui')))"
    )
    assert loaded == "[]"


def test_version_and_models_commands(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert napari_memnet.__version__ in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert isinstance(listed, list)
    assert all({"name", "task", "architecture", "source", "path"} <= set(m) for m in listed)


def test_models_command_lists_a_saved_user_model(capsys):
    from napari_memnet.models import build_model

    napari_memnet.save_model(build_model("memnet", {"blocks": 1, "recursions": 1, "channels": 4}),
                             "cli-listed", task="deblock")
    assert main(["models", "--task", "deblock"]) == 0
    out = capsys.readouterr().out
    assert "cli-listed" in out and "deblock" in out and "user" in out


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "napari_memnet", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "napari-memnet" in out.stdout


def test_the_checkout_leaves_room_for_a_gpu_sprints_images():
    """The device tool moves at most 64 MiB: the tracked files plus what a sprint
    carries (Train400 and its validation copies: 9 MiB; benchmarks/gpu/prepare_data.sh
    checks the sum). Tracked files stay under 48 MiB (47.9 on 2026-12-07 evening; with Train400: 56.9 MiB,
    leaving 7.1 MiB for untracked files), so a finished run's checkpoint leaves git
    (training-runs/README.md), and nothing big is committed. (44 MiB until 2026-12-07, when the
    fast denoiser grew to M2R7, and 46 until it grew to M2R8 the same day: each growth made its
    weights and its run's checkpoint about 3 MiB larger.)"""
    root = Path(__file__).resolve().parent.parent
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        import pytest

        pytest.skip(f"not a git checkout ({exc})")
    files = [root / name for name in listed.decode().split("\0") if name]
    sizes = {f: f.stat().st_size for f in files if f.is_file()}
    total_mib = sum(sizes.values()) / 2**20
    biggest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    assert total_mib < 48, (f"tracked files take {total_mib:.1f} MiB (biggest: "
                            f"{', '.join(str(f.relative_to(root)) for f in biggest)}); keep them under 48 MiB")
