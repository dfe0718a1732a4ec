"""``memnet export-bioimageio MODEL OUT.zip``: a model as a BioImage Model Zoo package (napari_memnet.zoo)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export-bioimageio", help="write a model as a BioImage Model Zoo package (.zip)",
                       description="Write MODEL (a bundled or user model name, or a .safetensors file) as a "
                                   "bioimage.io model package (rdf.yaml format 0.5). Needs the 'bioimageio' extra.")
    p.add_argument("model", help="model name or file")
    p.add_argument("out", help="the package to write (.zip)")
    p.add_argument("--scale", type=int, help="super-resolution models: the scale the package does (2, 3 or 4)")
    p.add_argument("--test-image", metavar="FILE",
                   help="an 8-bit gray image to use as the test input (default: a degraded crop of the bundled "
                        "sample)")
    p.add_argument("--no-torchscript", action="store_true", help="only pytorch_state_dict weights")
    p.add_argument("--validate", action="store_true",
                   help="then run the reference validator on it (bioimageio test); exit 1 if it fails")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CommandError
    from ..core.images import read_image
    from ..models.files import ModelFileError
    from ..zoo.export import export_bioimageio, validate_package

    try:
        image = read_image(args.test_image) if args.test_image else None
        out = export_bioimageio(args.model, args.out, scale=args.scale, test_image=image,
                                torchscript=not args.no_torchscript)
    except (ImportError, ModelFileError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if not args.validate:
        print(f"wrote {out}; check it with: bioimageio test {out}")
        return 0
    passed, summary = validate_package(out)
    print(summary)
    print(f"wrote {out}; the validator {'passed' if passed else 'FAILED'}")
    return 0 if passed else 1
