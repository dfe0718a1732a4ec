"""``export_bioimageio``: a napari-memnet model as a bioimage.io model package
(rdf.yaml, format 0.5) that the reference validator (``bioimageio test``) passes.

The package holds:

* ``weights.pt``: the model file's tensors as a plain state dict
  (``pytorch_state_dict``), with the architecture source and its keyword
  arguments (``zoo/source.py``; SR: the network behind MATLAB-bicubic
  upsampling, so the package takes the low-resolution image);
* ``weights_torchscript.pt``: the same network traced, when the trace gives the
  eager result at a second size too (otherwise left out, and the README says so);
* ``test_input.npy`` / ``test_output.npy``: a degraded crop of the bundled sample
  (noise sigma 25, bicubic down by the scale, JPEG quality 20) or a given image,
  and what ``napari_memnet.restore`` makes of it on the CPU in fp32;
* ``cover.png``, ``README.md`` (``zoo/document.py``), the citation, the licence,
  and the whole model card under ``config.napari_memnet`` (``zoo/install.py`` reads it), with
  absolute paths cut to their last part (``document.shareable_card``).

Intensities: inputs on the 8-bit scale 0..255, preprocessing ``scale_linear``
1/255, postprocessing 255: ``restore``'s map for 8-bit data, unclipped float out.
bioimageio.spec is imported here, inside the function, and only here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .._version import __version__
from ..core.atomic import atomic_path
from ..core.intensity import choose_intensity
from ..core.tasks import check_task, get_task
from .document import LICENSE, citations, cover, readme, shareable_card
from .source import architecture_source

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "astronaut_gray_256.png"
TEST_LEVELS = {"denoise": 25, "deblock": 20}  # sigma (0..255), JPEG quality of the generated test input
MIN_SIDE = 16  # smallest input side the package accepts (then steps of the network's alignment)
EXTRA_HINT = "pip install 'napari-memnet[bioimageio]'"


def require_bioimageio():
    """Import bioimageio.spec, or say how to install the optional extra."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ImportError(f"BioImage Model Zoo export and import need bioimageio.spec: {EXTRA_HINT}") from None


def validate_package(path) -> tuple[bool, str]:
    """Run the reference validator (bioimageio.core's ``test_model``, as ``bioimageio test``) on
    a package: ``(passed, the summary as text)``."""
    require_bioimageio()
    from bioimageio.core import test_model

    summary = test_model(str(path))
    return summary.status == "passed", summary.format()


def make_test_input(task: str, scale: int, side: int, image=None, seed: int = 0) -> np.ndarray:
    """A float32 (H, W) test input on the 0..255 scale, whole numbers (an 8-bit image).

    ``image`` (2-D, 8-bit values) is used as it is; otherwise a square
    centre crop of the bundled sample is degraded for ``task`` (``side``: the input's side;
    SR: the crop is ``scale * side``, bicubic-downscaled to ``side``)."""
    if image is not None:
        arr = np.asarray(image)
        if arr.ndim != 2:
            raise ValueError(f"a test image must be one 2-D gray plane, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or np.any(np.mod(arr, 1) != 0):
            raise ValueError("a test image must hold 8-bit values (whole numbers in 0..255)")
        if arr.max() <= 1:
            raise ValueError("a test image must not lie within 0..1 (restore would read it as 0..1 data)")
        return arr.astype(np.float32)
    from ..core.degrade import add_noise, imresize, jpeg_compress
    from ..core.images import read_image

    clean = read_image(SAMPLE).astype(np.float32) / 255
    side = scale * side
    if side > min(clean.shape):
        raise ValueError(f"this package needs a {side} px test image, more than the bundled sample's "
                         f"{min(clean.shape)}; pass test_image=")
    top, left = (clean.shape[0] - side) // 2, (clean.shape[1] - side) // 2
    clean = clean[top:top + side, left:left + side]
    if task == "denoise":
        degraded = add_noise(clean, TEST_LEVELS["denoise"], rng=np.random.default_rng(seed))
    elif task == "sr":
        degraded = imresize(clean, 1.0 / scale)
    elif task == "deblock":
        degraded = jpeg_compress(clean, TEST_LEVELS["deblock"])
    else:  # a task without a generator here: the clean crop still checks reproduction
        degraded = clean
    return np.clip(np.rint(np.asarray(degraded) * 255), 0, 255).astype(np.float32)


def _load_source_callable(path: Path, name: str):
    """Our own generated architecture file, imported the way bioimage.io does (on its own)."""
    import sys

    module_name = f"napari_memnet_export_{os.getpid()}_{id(path)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    return getattr(module, name)


def _trace(network, test_input: np.ndarray, step: int, path: Path) -> bool:
    """Save a TorchScript trace of ``network`` if it matches eager at a second size."""
    import torch

    x = torch.from_numpy(test_input / np.float32(255))[None, None]
    other = x[..., : x.shape[-2] - 2 * step, : x.shape[-1] - step]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shape-to-constant warnings: the second size below is the check
        traced = torch.jit.trace(network, x, check_trace=False)
        ok = all(torch.allclose(traced(t), network(t), atol=1e-5, rtol=1e-4) for t in (x, other))
    if ok:
        traced.save(str(path))
    return ok


def min_input_side(step: int, scale: int, halo: int) -> int:
    """The smallest input side (a multiple of ``step``, at least ``MIN_SIDE``) whose output
    keeps something after cropping ``halo`` output pixels from both sides."""
    side = max(MIN_SIDE, step)
    while scale * side <= 2 * halo:
        side += step
    return -(-side // step) * step


def _tensor_axes(v05, *, input_id, scale: int, step: int, min_side: int, halo: int, output: bool):
    axes = [v05.BatchAxis(), v05.ChannelAxis(channel_names=[v05.Identifier("gray")])]
    for a in ("y", "x"):
        if not output:
            axes.append(v05.SpaceInputAxis(id=v05.AxisId(a), size=v05.ParameterizedSize(min=min_side, step=step),
                                           scale=float(scale)))
        else:
            axes.append(v05.SpaceOutputAxisWithHalo(
                id=v05.AxisId(a), size=v05.SizeReference(tensor_id=input_id, axis_id=v05.AxisId(a)),
                halo=halo, scale=1.0))
    return axes


def export_bioimageio(model, out, *, scale: int | None = None, test_image=None, test_size: int = 64,
                      torchscript: bool = True, description: str | None = None, authors=None) -> Path:
    """Write ``model`` (a name, path or ``RestorationModel``) as a bioimage.io package ``out`` (.zip).

    ``scale``: the SR factor the package does (SR models only, required there; one
    package per scale). ``test_image``: a 2-D 8-bit image to use as the test input
    (default: a degraded crop of the bundled sample, ``test_size`` px). Returns ``out``."""
    require_bioimageio()
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as v05

    from ..api import restore
    from ..models.files import load_model

    loaded = load_model(model)
    card = shareable_card(loaded.card)  # no absolute paths of the machine it was trained on
    task = card.get("task")
    if not task:
        raise ValueError(f"model {loaded.name!r} has no task in its card; save it with a task first")
    task, scale = check_task(task, scale)
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"{out}: a bioimage.io package is written as a .zip file")
    net = loaded.network.eval()
    step = int(loaded.alignment)
    halo = int(loaded.receptive_radius) + (2 * scale if scale > 1 else 0)  # output px; SR: + bicubic support
    halo = -(-halo // scale) * scale  # a whole number of input pixels too
    min_side = min_input_side(step, scale, halo)
    side = max(min_side, -(-test_size // scale))
    test_input = make_test_input(task, scale, -(-side // step) * step, test_image)
    if min(test_input.shape) < min_side or any(n % step for n in test_input.shape):
        raise ValueError(f"the test input is {test_input.shape}; this package needs sides of at least {min_side} px "
                         f"in steps of {step}")
    norm = choose_intensity(test_input)  # restore's own rule: the package fixes the map it picks for 8-bit data
    if norm.mode != "8bit":
        raise ValueError(f"the test input needs 8-bit intensities (restore chose the {norm.mode!r} map)")
    test_output = restore(test_input, task, scale=scale if task == "sr" else None, model=loaded, device="cpu",
                          precision="fp32")
    with tempfile.TemporaryDirectory(prefix="memnet-bioimageio-") as tmp:
        root = Path(tmp)
        source, callable_name, kwargs = architecture_source(net, scale)
        (root / "architecture.py").write_text(source, "utf-8")
        state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
        torch.save(state, root / "weights.pt")
        packaged = _load_source_callable(root / "architecture.py", callable_name)(**kwargs)
        packaged.load_state_dict(state, strict=True)
        traced = torchscript and _trace(packaged.eval(), test_input, step, root / "weights_torchscript.pt")
        np.save(root / "test_input.npy", test_input[None, None])
        np.save(root / "test_output.npy", np.asarray(test_output, dtype=np.float32)[None, None])
        from PIL import Image

        Image.fromarray(cover(test_input, test_output)).save(root / "cover.png")
        Image.fromarray(test_input.astype(np.uint8)).save(root / "sample_input.png")  # whole numbers 0..255
        import tifffile

        tifffile.imwrite(root / "sample_output.tif", np.asarray(test_output, dtype=np.float32))
        label = get_task(task).label
        (root / "README.md").write_text(readme(card, task_label=label, scale=scale, version=__version__,
                                               torchscript=traced), "utf-8")
        input_id, output_id = v05.TensorId("raw"), v05.TensorId("restored")
        axes = {"input_id": input_id, "scale": scale, "step": step, "min_side": min_side}
        torch_version = v05.Version(torch.__version__.split("+")[0])
        weights = {"pytorch_state_dict": v05.PytorchStateDictWeightsDescr(
            source=root / "weights.pt", pytorch_version=torch_version,
            architecture=v05.ArchitectureFromFileDescr(source=root / "architecture.py",
                                                       callable=v05.Identifier(callable_name), kwargs=kwargs))}
        if traced:
            weights["torchscript"] = v05.TorchscriptWeightsDescr(
                source=root / "weights_torchscript.pt", pytorch_version=torch_version, parent="pytorch_state_dict")
        section = {"card": card, "scale": scale, "exported_by": f"napari-memnet {__version__}"}
        descr = v05.ModelDescr(
            name=f"napari-memnet {loaded.name}" + (f" x{scale}" if scale > 1 else ""),
            description=description or f"{label}{f' x{scale}' if scale > 1 else ''} with {card['architecture']} "
                                       f"(napari-memnet model {loaded.name})",
            authors=[v05.Author(**a) for a in (authors or [{"name": "napari-memnet developers"}])],
            cite=[v05.CiteEntry(text=text, url=v05.HttpUrl(url)) for text, url in citations(card["architecture"])],
            license=v05.LicenseId(LICENSE),
            tags=["napari-memnet", card["architecture"], task, "2d", "pytorch", "image-restoration"],
            documentation=v05.FileDescr(source=root / "README.md"),
            covers=[v05.FileDescr(source=root / "cover.png")],
            inputs=[v05.InputTensorDescr(
                id=input_id, axes=_tensor_axes(v05, output=False, halo=0, **axes),
                test_tensor=v05.FileDescr(source=root / "test_input.npy"),
                sample_tensor=v05.FileDescr(source=root / "sample_input.png"),
                data=v05.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[v05.ScaleLinearDescr(kwargs=v05.ScaleLinearKwargs(
                    gain=1.0 / norm.span, offset=-norm.low / norm.span or 0.0))])],
            outputs=[v05.OutputTensorDescr(
                id=output_id, axes=_tensor_axes(v05, output=True, halo=halo, **axes),
                test_tensor=v05.FileDescr(source=root / "test_output.npy"),
                sample_tensor=v05.FileDescr(source=root / "sample_output.tif"),
                data=v05.IntervalOrRatioDataDescr(type="float32"),
                postprocessing=[v05.ScaleLinearDescr(kwargs=v05.ScaleLinearKwargs(
                    gain=norm.span, offset=norm.low))])],
            weights=v05.WeightsDescr(**weights),
            config=v05.Config(napari_memnet=section),
        )
        package = root / "package.zip"
        save_bioimageio_package(descr, output_path=package)
        with atomic_path(out) as target:
            shutil.copyfile(package, target)
    return out
