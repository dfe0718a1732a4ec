"""The napari layer: the Restore and Train widgets, each a Qt-free controller (checks, planning, workers) composed with a thin form."""
