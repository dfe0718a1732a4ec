"""The BioImage Model Zoo: export a model as a bioimage.io package and install one back (bioimageio.spec, an optional extra, imported lazily)."""
