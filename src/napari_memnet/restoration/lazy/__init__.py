"""Big data: lazy dask restoration (plan, graph), schedulers and zarr/TIFF input and output, all running the per-plane pipeline."""
