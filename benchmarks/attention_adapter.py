"""Would a non-local layer help the fast denoiser where BM3D beats it? A frozen-backbone screen.

Issue #14's sigma-25 gap against BM3D is regular texture (Barbara, Urban100's buildings): BM3D
averages similar blocks from across a window; the fast MemNet only convolves. This screen adds one
windowed self-attention layer to the shipped, frozen network and trains that layer alone:

* the layer: multi-head self-attention over non-overlapping W x W windows of the space-to-depth grid
  (W = 16: 32 x 32 image pixels), queries and keys from 1x1 convs, a learned relative-position bias,
  and a 1x1 output conv that starts at zero, so that step 0 computes exactly the shipped model;
  ``B <- B + out(attention(B))`` on the feature map after memory block ``--after`` (1: between the
  two blocks, so that block 2 works on the averaged features; 2: after the last block, just before
  the reconstruction);
* the backbone (the shipped ``memnet-fast-denoise``) is in eval mode with its weights frozen: its
  BatchNorm uses the running statistics it restores with, nothing of it moves, and a gain is the
  layer's alone;
* the recipe of the last CPU runs: 128 px patches of Train400's training images (``.data/train400-train``,
  ``benchmarks/denoise_split.sh``) from the package's ``PatchSampler`` (8-fold augmentation, blind sigma
  ~ U[0, 75]), L1 on the final output, Adam with a cosine from ``--lr``;
* checkpoints (the layer, Adam and both generators) atomically every ``--checkpoint-minutes`` to
  ``OUT/checkpoint.pt`` (``torch.load(weights_only=True)``), ``--resume`` continues exactly;
* ``--evaluate``: held-out validation (``.data/train400-val``, sigma 15/25/50), every 10th of the 200
  BSDS500 train photographs (``../shared/data/train/BSD200``) and of Urban100_Y at sigma 25/50, with the
  noise of ``bm3d_compare.py``, for the layer and for the shipped model on the same noisy images,
  into ``OUT/eval.json``. None of those images trains anything here.

    python benchmarks/attention_adapter.py --after 1 --out .data/attn/after1 --minutes 80
    python benchmarks/attention_adapter.py --after 1 --out .data/attn/after1 --evaluate

Three options turn the screen into a short whole-network run (each keeps step 0 the shipped model):

* ``--backbone-lr LR``: the backbone trains too, at peak rate LR on the layer's cosine (its BatchNorm
  still uses the running statistics; the checkpoint then holds its weights as well), so that the
  features can learn to use the new layer; the evaluation's "shipped" column stays the shipped model;
* ``--no-layer`` (with ``--backbone-lr``): the control, the backbone alone trained the same way;
* ``--after 0 --tail-features``: the full-resolution tail also sees the last memory block's features,
  moved back to full resolution by depth-to-space (C / s^2 = 16 channels a pixel).

    python benchmarks/attention_adapter.py --after 1 --backbone-lr 3e-5 --lr 1e-3 --out .data/attn2/after1-whole

This is a screen, not a product: the layer is not part of the package's MemNet (yet).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bm3d_compare import noisy  # noqa: E402 - the check sets' noise, the same as that script's


class WindowAttention(nn.Module):
    """Self-attention inside non-overlapping ``window`` x ``window`` windows; zero output at init."""

    def __init__(self, channels: int, window: int = 16, heads: int = 2, key_dim: int = 16):
        super().__init__()
        self.window, self.heads, self.key_dim = window, heads, key_dim
        self.q = nn.Conv2d(channels, heads * key_dim, 1)
        self.k = nn.Conv2d(channels, heads * key_dim, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        pos = torch.stack([ys.flatten(), xs.flatten()])  # 2, T
        rel = pos[:, :, None] - pos[:, None, :] + window - 1  # 2, T, T
        self.register_buffer("rel_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        n, c, h, w = b.shape
        win = self.window
        ph, pw = -h % win, -w % win
        x = F.pad(b, (0, pw, 0, ph)) if ph or pw else b
        hh, ww = h + ph, w + pw
        def windows(t, d):  # (n, heads*d, hh, ww) -> (n * windows, heads, T, d)
            t = t.reshape(n, self.heads, d, hh // win, win, ww // win, win)
            return t.permute(0, 3, 5, 1, 4, 6, 2).reshape(-1, self.heads, win * win, d)
        q = windows(self.q(x), self.key_dim)
        k = windows(self.k(x), self.key_dim)
        v = windows(self.v(x), c // self.heads)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.key_dim) + self.bias[:, self.rel_index]
        if ph or pw:  # padded positions are no keys
            valid = torch.zeros(hh, ww, dtype=torch.bool, device=b.device)
            valid[:h, :w] = True
            valid = valid.reshape(hh // win, win, ww // win, win).permute(0, 2, 1, 3).reshape(-1, 1, 1, win * win)
            logits = logits.reshape(n, -1, self.heads, win * win, win * win).masked_fill(~valid, float("-inf"))
            logits = logits.reshape(-1, self.heads, win * win, win * win)
        a = (logits.softmax(-1) @ v)  # (n*windows, heads, T, c/heads)
        a = a.reshape(n, hh // win, ww // win, self.heads, win, win, c // self.heads)
        a = a.permute(0, 3, 6, 1, 4, 2, 5).reshape(n, c, hh, ww)[..., :h, :w]
        return b + self.out(a)


class FullResTail(nn.Module):
    """A small full-resolution net on [noisy input, the backbone's result] whose output is added to that
    result: ``depth`` 3x3 convs of ``channels`` with ReLUs; the last conv starts at zero."""

    def __init__(self, in_channels: int, channels: int = 32, depth: int = 6, features: int = 0):
        super().__init__()
        layers = [nn.Conv2d(2 * in_channels + features, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(channels, in_channels, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        inputs = [x, y] if features is None else [x, y, features]
        return y + self.net(torch.cat(inputs, dim=1))


class NoLayer(nn.Module):
    """The control: no layer at all, the backbone's result as it is (``--no-layer``)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y


class Adapted(nn.Module):
    """The fast MemNet with one attention layer after memory block ``after``, or (``after`` 0) with a
    full-resolution tail after its output. The backbone is frozen unless ``train_backbone``; its
    BatchNorm uses its running statistics either way. ``tail_features``: the tail also sees the last
    memory block's features, moved back to full resolution (depth-to-space: C / s^2 channels a pixel)."""

    def __init__(self, backbone, after: int, window: int, tail_features: bool = False,
                 train_backbone: bool = False, no_layer: bool = False):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(train_backbone)
        self.after = 0 if no_layer else after
        self.tail_features = tail_features and not self.after and not no_layer
        cfg = backbone.config
        features = cfg.channels // cfg.unshuffle ** 2 if self.tail_features else 0
        if no_layer:
            self.attn = NoLayer()
        elif after:
            self.attn = WindowAttention(cfg.channels, window)
        else:
            self.attn = FullResTail(cfg.in_channels, features=features)

    def train(self, mode: bool = True):  # the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from napari_memnet.models.memnet import depth_to_space, space_to_depth

        net, s = self.backbone, self.backbone.config.unshuffle
        if not self.after and not self.tail_features:
            with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in net.parameters())):
                y = net(x)
            return self.attn(x, y)
        h, w = x.shape[-2:]
        xi = space_to_depth(x, s)
        long_term = [net.extract(xi)]
        final = None
        for m, block in enumerate(net.blocks):
            b = block(long_term, "sum")
            if m + 1 == self.after:
                b = self.attn(b)
            long_term.append(b)
            y = xi + net.reconstruct(b, m)
            final = net.branch_weights[m] * y if final is None else final + net.branch_weights[m] * y
        y = depth_to_space(final, s, h, w)
        return self.attn(x, y, depth_to_space(b, s, h, w)) if self.tail_features else y


def sampler(folder: Path, patch: int, seed: int):
    """The package's training sampler over the 8-bit images of ``folder``: uniform patches, 8-fold
    augmentation, blind sigma ~ U[0, 75] (``training.sampler.PatchSampler``)."""
    from napari_memnet.evaluate import list_images, load_plane
    from napari_memnet.training.data import TrainItem
    from napari_memnet.training.sampler import PatchSampler

    items = [TrainItem(p.stem, load_plane(p, "denoise").astype(np.float32) / 255.0) for p in list_images(folder)]
    return PatchSampler(items, "denoise", (0.0, 75.0), patch, seed, "cpu")


def trains_backbone(model: Adapted) -> bool:
    return any(p.requires_grad for p in model.backbone.parameters())


def save_checkpoint(path: Path, model: Adapted, opt, step: int, patches, seconds: float) -> None:
    from napari_memnet.core.atomic import atomic_path

    meta, tensors = patches.state_dict()
    state = {"attn": model.attn.state_dict(), "opt": opt.state_dict(), "step": torch.tensor(step),
             **({"backbone": model.backbone.state_dict()} if trains_backbone(model) else {}),
             "seconds": torch.tensor(seconds), "sampler": tensors,
             "sampler_meta": torch.tensor(np.frombuffer(json.dumps(meta).encode(), np.uint8).copy())}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(args, model: Adapted, log) -> None:
    patches = sampler(args.train_dir, args.patch, args.seed)
    groups = [{"params": list(model.attn.parameters()), "lr": args.lr, "base": args.lr}]
    groups = [g for g in groups if g["params"]]  # the control (--no-layer) has none
    if trains_backbone(model):  # the same cosine, scaled to the backbone's rate
        groups.append({"params": list(model.backbone.parameters()), "lr": args.backbone_lr, "base": args.backbone_lr})
    opt = torch.optim.Adam(groups)
    step, seconds = 0, 0.0
    ckpt = args.out / "checkpoint.pt"
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.attn.load_state_dict(state["attn"])
        if trains_backbone(model):
            model.backbone.load_state_dict(state["backbone"])
        opt.load_state_dict(state["opt"])
        step, seconds = int(state["step"]), float(state["seconds"])
        patches.load_state_dict(json.loads(bytes(state["sampler_meta"].numpy()).decode()), state["sampler"])
        log({"event": "resumed", "step": step})
    model.train()
    start, last_save, losses = time.monotonic(), time.monotonic(), []
    stop = min(args.steps, args.stop_after or args.steps)
    while step < stop and time.monotonic() - start < args.minutes * 60:
        decay = 0.5 * (1 + math.cos(math.pi * step / args.steps))  # 1 -> 0
        for g in opt.param_groups:
            g["lr"] = g["base"] * (args.lr_min / args.lr + (1 - args.lr_min / args.lr) * decay)
        lr = opt.param_groups[0]["lr"]
        noisy, clean, _ = patches.batch(args.batch)
        loss = F.l1_loss(model(noisy), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % args.log_every == 0:
            log({"event": "train", "step": step, "loss": float(np.mean(losses)), "lr": lr,
                 "seconds": round(seconds + time.monotonic() - start, 1)})
            losses = []
        if time.monotonic() - last_save > args.checkpoint_minutes * 60:
            save_checkpoint(ckpt, model, opt, step, patches, seconds + time.monotonic() - start)
            last_save = time.monotonic()
    save_checkpoint(ckpt, model, opt, step, patches, seconds + time.monotonic() - start)
    log({"event": "stopped", "step": step, "seconds": round(seconds + time.monotonic() - start, 1)})


@torch.no_grad()
def evaluate(args, model: Adapted, log, shipped: nn.Module) -> dict:
    from napari_memnet.core.metrics import psnr
    from napari_memnet.evaluate import list_images, load_plane

    model.eval()
    state = torch.load(args.out / "checkpoint.pt", weights_only=True)
    model.attn.load_state_dict(state["attn"])
    if "backbone" in state:
        model.backbone.load_state_dict(state["backbone"])
    sets = [("held-out", args.val_dir, 1, (15.0, 25.0, 50.0)),
            ("BSD200 train check", args.data / "train" / "BSD200", 10, (25.0, 50.0)),
            ("Urban100 check", args.data / "test" / "Urban100_Y", 10, (25.0, 50.0))]
    sets = [entry for entry in sets if entry[0].split()[0] in args.sets.split(",")]
    rows = []
    for label, folder, every, sigmas in sets:
        for path in list_images(folder)[::every]:
            clean = load_plane(path, "denoise").astype(np.float32) / 255.0
            name = f"{folder.name}/{path.stem}"
            for sigma in sigmas:
                x = noisy(clean, name, sigma, 0)
                row = {"set": label, "image": name, "sigma": sigma, "input_psnr": psnr(x, clean)}
                for key, net in (("shipped_psnr", shipped), ("attention_psnr", model)):
                    row[key] = psnr(net(torch.from_numpy(x)[None, None])[0, 0].numpy(), clean)
                rows.append(row)
                log(row)
    summary = {}
    for label, _, _, sigmas in sets:
        for sigma in sigmas:
            sel = [r for r in rows if r["set"] == label and r["sigma"] == sigma]
            summary[f"{label}, sigma {sigma:g}"] = {
                "images": len(sel), **{k: float(np.mean([r[k] for r in sel])) for k in ("shipped_psnr", "attention_psnr")},
                "gain": float(np.mean([r["attention_psnr"] - r["shipped_psnr"] for r in sel]))}
    return {"step": int(state["step"]), "train_seconds": float(state["seconds"]), "summary": summary, "rows": rows}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="memnet-fast-denoise")
    p.add_argument("--after", type=int, choices=(0, 1, 2), default=1,
                   help="the memory block the attention layer follows; 0: a full-resolution tail instead")
    p.add_argument("--window", type=int, default=16, help="window side on the space-to-depth grid")
    p.add_argument("--tail-features", action="store_true",
                   help="with --after 0: the tail also sees the last memory block's features at full resolution")
    p.add_argument("--no-layer", action="store_true",
                   help="the control of --backbone-lr: no layer, the backbone alone trains the same way")
    p.add_argument("--backbone-lr", type=float, default=None,
                   help="train the backbone too (its BatchNorm statistics stay), at this peak rate of the same cosine")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-dir", type=Path, default=ROOT / ".data" / "train400-train")
    p.add_argument("--val-dir", type=Path, default=ROOT / ".data" / "train400-val")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=3000, help="the cosine's length")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of this piece")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                   help="end this piece at step STEP (the cosine stays --steps long)")
    p.add_argument("--evaluate", action="store_true", help="evaluate OUT/checkpoint.pt instead of training")
    p.add_argument("--sets", default="held-out,BSD200,Urban100", help="with --evaluate: which of the three sets")
    p.add_argument("--eval-name", default="eval", help="with --evaluate: the record is OUT/NAME.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.no_layer and args.backbone_lr is None:
        raise SystemExit("--no-layer trains the backbone alone: it needs --backbone-lr")
    torch.set_num_threads(args.threads)
    from napari_memnet.models.files import load_model

    backbone = load_model(args.model, task="denoise").network
    torch.manual_seed(args.seed)  # the layer's initial weights (a resumed run loads them)
    model = Adapted(backbone, args.after, args.window, args.tail_features, args.backbone_lr is not None, args.no_layer)
    args.out.mkdir(parents=True, exist_ok=True)
    events = args.out / (f"{args.eval_name}.jsonl" if args.evaluate else "events.jsonl")

    def log(record):
        line = json.dumps(record)
        print(line, flush=True)
        with open(events, "a") as fh:
            fh.write(line + "\n")

    log({"event": "command", "argv": sys.argv, "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
    if args.evaluate:
        from napari_memnet.core.atomic import atomic_path

        result = {"command": " ".join(sys.argv), "model": args.model, "after": args.after, "window": args.window,
                  "tail_features": args.tail_features, "backbone_lr": args.backbone_lr, "no_layer": args.no_layer,
                  **evaluate(args, model, log, load_model(args.model, task="denoise").network.eval())}
        for key, value in result["summary"].items():
            print(f"{key}: shipped {value['shipped_psnr']:.4f}, attention {value['attention_psnr']:.4f}, "
                  f"gain {value['gain']:+.4f} ({value['images']} images)")
        with atomic_path(args.out / f"{args.eval_name}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1))
    else:
        train(args, model, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
