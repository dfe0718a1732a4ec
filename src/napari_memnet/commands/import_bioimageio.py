"""``memnet import-bioimageio PKG``: install a BioImage Model Zoo package of our architectures as a user model."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("import-bioimageio", help="install a BioImage Model Zoo package as a user model",
                       description="Install PKG (a bioimage.io .zip or a folder with rdf.yaml) of a MemNet, RED30 or "
                                   "other napari-memnet architecture as a user model. Packages of other architectures "
                                   "are refused; no code from the package runs. Needs the 'bioimageio' extra.")
    p.add_argument("package", help="the package (.zip or folder)")
    p.add_argument("--name", help="the user model's name (default: the exported model's name)")
    p.add_argument("--overwrite", action="store_true", help="replace a user model of that name")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CommandError
    from ..models.files import ModelFileError
    from ..zoo.install import import_bioimageio

    try:
        info = import_bioimageio(args.package, name=args.name, overwrite=args.overwrite)
    except (ImportError, ModelFileError, ValueError, FileExistsError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"installed {info.name} ({info.task or 'no task'}, {info.architecture}) as {info.path}")
    return 0
