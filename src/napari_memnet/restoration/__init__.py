"""Restoring images with a model: the one per-plane pipeline, the engine and its cache, the eager driver and the lazy (dask/zarr) path."""
