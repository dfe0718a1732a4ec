"""After training: reach the Restore widget (refresh its list, apply the new model through it)."""

from __future__ import annotations

RESTORE_WIDGET = "Restore (MemNet)"


def find_restore_widget(viewer, create: bool = False):
    """The docked Restore widget of ``viewer`` (docked now if ``create``), else ``None``."""
    from .restore_widget import RestoreWidget

    try:
        for widget in viewer.window.dock_widgets.values():
            if isinstance(widget, RestoreWidget):
                return widget
    except AttributeError:  # a viewer without a Qt window
        return None
    if create:
        return viewer.window.add_plugin_dock_widget("napari-memnet", RESTORE_WIDGET)[1]
    return None


def restore_with(viewer, model: str, task: str, layer=None, scale: int | None = None):
    """Drive the Restore widget: choose ``task``/``scale``/``model`` and run it on ``layer``.

    Returns the Restore widget's worker (``None`` if it refused; its message says why)."""
    restore = find_restore_widget(viewer, create=True)
    restore.task.value = task
    if task == "sr" and scale:
        restore.scale.value = int(scale)
    restore.refresh_models()
    restore.model.value = model
    return restore.run(layer)
