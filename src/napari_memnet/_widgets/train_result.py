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


def _export(model: str, path: str, scale: int | None) -> str:
    """Worker body: write ``model`` as a bioimage.io package (no Qt here)."""
    from ..zoo.export import export_bioimageio

    return str(export_bioimageio(model, path, scale=scale))


class ModelExport:
    """The Train widget's "Export (bioimage.io)" button: after a run, write its model as a
    BioImage Model Zoo package (``napari_memnet.export_bioimageio``) in a worker thread.
    From scripts: ``worker = widget.exporter.export("out.zip")``."""

    def __init__(self, widget):
        from magicgui.widgets import PushButton

        self.widget = widget
        self.button = PushButton(text="Export (bioimage.io)", enabled=False,
                                 tooltip="write the trained model as a BioImage Model Zoo package (.zip)")
        self.button.changed.connect(lambda *_: self.export())
        self.worker = None
        self.last_path: str | None = None

    def enable(self, running: bool) -> None:
        self.button.enabled = not running and self.worker is None and self.widget.last_model is not None

    def export(self, path=None):
        """Export the last trained model to ``path`` (asked with a file dialog when ``None``); the worker."""
        from napari.qt.threading import create_worker

        widget = self.widget
        if widget.last_model is None:
            widget.show_problem("no model trained yet")
            return None
        kwargs = (widget.controller.last_run or {}).get("kwargs", {})
        scale = int((kwargs.get("levels") or (2,))[0]) if kwargs.get("task") == "sr" else None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(widget.native, "Export to the BioImage Model Zoo",
                                                  f"{widget.last_model}.zip", "bioimage.io package (*.zip)")
            if not path:
                return None
        self.worker = create_worker(_export, widget.last_model, str(path), scale)
        widget.status.value = f"Exporting {widget.last_model} to {path} ..."
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(lambda exc: widget.show_problem(f"export failed: {exc}"))
        self.worker.finished.connect(self._finished)
        self.enable(running=False)
        self.worker.start()
        return self.worker

    def _done(self, path: str) -> None:
        self.last_path = path
        self.widget.status.value = f"Exported to {path} (bioimage.io package)."

    def _finished(self) -> None:
        self.worker = None
        self.widget.update_buttons()
