"""The npe2 manifest: valid, importable, and contributing the widget, menu and samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_memnet" / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_validates_with_npe2_cli():
    """`npe2 validate` on the manifest file passes (the check plugin authors run)."""
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_every_python_name_imports(manifest):
    manifest.validate_imports()  # raises if a python_name cannot be imported


def test_restore_widget_contributed_to_plugins_and_filter_menu(manifest):
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert "Restore (MemNet)" in widgets
    command = widgets["Restore (MemNet)"]
    commands = {c.id: c for c in manifest.contributions.commands}
    assert commands[command].python_name == "napari_memnet._widgets.restore_widget:RestoreWidget"
    filter_menu = manifest.contributions.menus["napari/layers/filter"]
    assert command in [item.command for item in filter_menu]


def test_filter_menu_is_contributable_in_installed_napari():
    pytest.importorskip("napari")
    from napari._app_model.constants._menus import is_menu_contributable

    assert is_menu_contributable("napari/layers/filter")


def test_sample_data_entries(manifest):
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {"noisy", "lowres", "jpeg", "blurry", "cells"}
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    for sample in manifest.contributions.sample_data:
        assert commands[sample.command].startswith("napari_memnet.sample_data:")


def test_manifest_is_registered_under_the_package_entry_point():
    """The installed distribution points napari at this manifest."""
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-memnet"]
    if not eps:
        pytest.skip("napari-memnet is not installed (only on PYTHONPATH)")
    assert eps[0].value == "napari_memnet:napari.yaml"


@pytest.mark.gui
def test_menu_entries_open_the_widget(make_napari_viewer):
    """Layers > Filter and Plugins > MemNet restoration list the widget; the action docks it."""
    viewer = make_napari_viewer()
    from napari._app_model import get_app_model

    app = get_app_model()

    def command_ids(menu_id):
        return [item.command.id for item in app.menus.get_menu(menu_id) if hasattr(item, "command")]

    assert "napari-memnet.restore_widget" in command_ids("napari/layers/filter")
    assert "napari-memnet.restore_widget" in command_ids("napari/plugins/napari-memnet")
    app.commands.execute_command("napari-memnet.restore_widget").result()
    docked = [name for name in viewer.window.dock_widgets if name.startswith("Restore (MemNet)")]
    assert docked, list(viewer.window.dock_widgets)
    assert type(viewer.window.dock_widgets[docked[0]]).__name__ == "RestoreWidget"
