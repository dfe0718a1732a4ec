"""MemNet (Tai, Yang, Liu, Xu, ICCV 2017), written from the paper's facts.

    y = x + f_rec(B_M),  B_0 = f_ext(x),  B_m = M_m(B_{m-1})

Every convolution is pre-activated (BatchNorm -> ReLU -> conv).

* ``FeatureExtraction`` is f_ext: BN-ReLU-Conv3x3, in_channels -> C.
* ``MemoryBlock`` is M_m: a ``RecursiveUnit`` (R recursions of one residual
  block whose two 3x3 convs are shared across recursions, each recursion with
  its own BatchNorms) followed by a ``GateUnit`` (BN-ReLU-Conv1x1 over the
  long-term memory [B_0..B_{m-1}] then the short-term memory [H^1..H^R]).
* ``Reconstruction`` is f_rec: BN-ReLU-Conv3x3, C -> in_channels. In the
  multi-supervised net the conv is shared by all M branches and every branch
  has its own BN; the output is sum_m w_m * (x + f_rec_m(B_m)).

The gate's 1x1 conv over a concatenation equals the sum of 1x1 convs over its
parts (and BatchNorm is per channel, so it splits too). ``gate_mode="sum"``
accumulates part by part and never materialises the (m+R)*C-channel tensor;
``gate_mode="concat"`` is the literal form. Both give the same numbers, in
training and in eval mode.

Images are float tensors (N, in_channels, H, W) on the 0..1 intensity scale.

Space-to-depth (``unshuffle`` = s > 1, the fast MemNet): the memory blocks run
on the pixel-unshuffled image, s*s*in_channels channels at H/s x W/s (the
image is first padded by edge replication to a multiple of s), f_rec returns
s*s*in_channels channels, and the result is pixel-shuffled back and cropped.
Since pixel (un)shuffle is a permutation, x + shuffle(f_rec(B)) equals
shuffle(unshuffle(x) + f_rec(B)): the residual to the input is the paper's.
The blocks cost 1/s^2 of the paper net's FLOPs per image pixel at the same C.
A model with s > 1 is translation-equivariant only for shifts that are
multiples of s, so tiles and chunks start on multiples of ``alignment`` (= s).

Untied recursions (``shared_recursions=False``, not the paper's): every
recursion of a recursive unit has its own two convs. The FLOPs, and so the
speed, are the same; the recursive units hold R times the conv weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

GATE_MODES = ("sum", "concat")


@dataclass(frozen=True)
class MemNetConfig:
    in_channels: int = 1
    blocks: int = 6  # M
    recursions: int = 6  # R
    channels: int = 64  # C
    multi_supervised: bool = True
    unshuffle: int = 1  # s: space-to-depth factor of the fast MemNet (1: the paper's net)
    shared_recursions: bool = True  # the paper's weight sharing; False: each recursion has its own convs

    def __post_init__(self):
        for name in ("in_channels", "blocks", "recursions", "channels", "unshuffle"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MemNet {name} must be a positive integer, got {value!r}")
        if not isinstance(self.shared_recursions, bool):
            raise ValueError(f"MemNet shared_recursions must be true or false, got {self.shared_recursions!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def inner_channels(self) -> int:
        """Channels the memory blocks see: in_channels * s * s."""
        return self.in_channels * self.unshuffle**2


def space_to_depth(x: torch.Tensor, s: int) -> torch.Tensor:
    """Pad (edge replication) H and W up to multiples of ``s``, then pixel-unshuffle."""
    if s == 1:
        return x
    h, w = x.shape[-2:]
    ph, pw = -h % s, -w % s
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return F.pixel_unshuffle(x, s)


def depth_to_space(y: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """Pixel-shuffle back and crop to ``h`` x ``w`` (the inverse of ``space_to_depth``)."""
    if s == 1:
        return y
    return F.pixel_shuffle(y, s)[..., :h, :w]


def receptive_radius_of(config: MemNetConfig) -> int:
    """Image pixels of context each side that can influence one output pixel.

    Paper net: 1 (f_ext) + 2R per block + 1 (f_rec). With s > 1 the radius r in
    the unshuffled grid becomes s * (r + 1) image pixels: a multiple of s (tiles
    start on the s-grid) that also covers the position of a pixel inside its cell."""
    r = 1 + config.blocks * 2 * config.recursions + 1
    s = config.unshuffle
    return r if s == 1 else s * (r + 1)


def accumulate(acc: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
    """acc + term, in place when no gradient is recorded (saves a full tensor)."""
    if torch.is_grad_enabled() and (acc.requires_grad or term.requires_grad):
        return acc + term
    return acc.add_(term)


def _bn_relu(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.relu(bn(x))


class PreActConv(nn.Sequential):
    """BN -> ReLU -> Conv: the unit every MemNet convolution is built from."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        )


class FeatureExtraction(PreActConv):
    def __init__(self, in_channels: int, channels: int):
        super().__init__(in_channels, channels, 3)


class RecursiveUnit(nn.Module):
    """H^r = H^{r-1} + conv_b(BNReLU(conv_a(BNReLU(H^{r-1})))), r = 1..R.

    ``conv_a``/``conv_b`` are shared by the R recursions (the paper), or with
    ``shared=False`` lists of R convs, one pair per recursion; ``bn_a[r]``/``bn_b[r]``
    belong to recursion r alone."""

    def __init__(self, channels: int, recursions: int, shared: bool = True):
        super().__init__()
        self.recursions = recursions
        self.shared = shared
        def conv():
            return nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_a = conv() if shared else nn.ModuleList(conv() for _ in range(recursions))
        self.conv_b = conv() if shared else nn.ModuleList(conv() for _ in range(recursions))
        self.bn_a = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(recursions))
        self.bn_b = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(recursions))

    def convs(self, r: int) -> tuple[nn.Conv2d, nn.Conv2d]:
        """(conv_a, conv_b) of recursion r."""
        return (self.conv_a, self.conv_b) if self.shared else (self.conv_a[r], self.conv_b[r])

    def step(self, h: torch.Tensor, r: int) -> torch.Tensor:
        conv_a, conv_b = self.convs(r)
        t = conv_a(_bn_relu(h, self.bn_a[r]))
        return h + conv_b(_bn_relu(t, self.bn_b[r]))


class GateUnit(nn.Module):
    """BN-ReLU-Conv1x1 over [B_0..B_{m-1}, H^1..H^R] -> C channels."""

    def __init__(self, n_parts: int, channels: int):
        super().__init__()
        self.n_parts = n_parts
        self.channels = channels
        self.bn = nn.BatchNorm2d(n_parts * channels)
        self.conv = nn.Conv2d(n_parts * channels, channels, 1)

    def forward_concat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(F.relu(self.bn(torch.cat(parts, dim=1))))

    def part(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Contribution of part k (C channels) to the gate output, without bias."""
        c = self.channels
        sl = slice(k * c, (k + 1) * c)
        bn = self.bn
        use_batch_stats = bn.training or bn.running_mean is None
        if bn.training and bn.track_running_stats:
            # same bookkeeping as nn.BatchNorm2d, done once per forward (k == 0)
            if k == 0:
                bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        else:
            momentum = 0.0
        running_mean = bn.running_mean[sl] if bn.running_mean is not None else None
        running_var = bn.running_var[sl] if bn.running_var is not None else None
        y = F.batch_norm(
            x,
            running_mean,
            running_var,
            bn.weight[sl],
            bn.bias[sl],
            use_batch_stats,
            momentum,
            bn.eps,
        )
        return F.conv2d(F.relu(y), self.conv.weight[:, sl])


class MemoryBlock(nn.Module):
    def __init__(self, index: int, channels: int, recursions: int, shared: bool = True):
        super().__init__()
        self.index = index  # m, 1-based: the block sees m long-term memories
        self.recursive = RecursiveUnit(channels, recursions, shared)
        self.gate = GateUnit(index + recursions, channels)

    def forward(self, long_term: list[torch.Tensor], gate_mode: str = "sum") -> torch.Tensor:
        """``long_term`` is [B_0 .. B_{m-1}]; returns B_m."""
        h = long_term[-1]
        rec = self.recursive
        if gate_mode == "concat":
            short_term = []
            for r in range(rec.recursions):
                h = rec.step(h, r)
                short_term.append(h)
            return self.gate.forward_concat([*long_term, *short_term])
        if gate_mode != "sum":
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got {gate_mode!r}")
        gate = self.gate
        acc = gate.part(long_term[0], 0)
        for k in range(1, len(long_term)):
            acc = accumulate(acc, gate.part(long_term[k], k))
        n_long = len(long_term)
        for r in range(rec.recursions):
            h = rec.step(h, r)
            acc = accumulate(acc, gate.part(h, n_long + r))
        return accumulate(acc, gate.conv.bias.view(1, -1, 1, 1))


class Reconstruction(nn.Module):
    """f_rec: BN-ReLU-Conv3x3, C -> in_channels; one BN per supervised branch."""

    def __init__(self, channels: int, out_channels: int, branches: int):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(branches))
        self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, b: torch.Tensor, branch: int = 0) -> torch.Tensor:
        return self.conv(_bn_relu(b, self.bns[branch]))


class MemNet(nn.Module):
    """MemNet with M memory blocks of R recursions and C filters.

    With ``multi_supervised=True`` every block m has an output
    y_m = x + f_rec_m(B_m) and the final output is sum_m w_m y_m (learnable
    w_m, initialised to 1/M). ``forward(x)`` returns the final output;
    ``forward(x, return_branches=True)`` returns ``(final, [y_1..y_M])``
    (for the plain net the branch list holds only the final output).
    """

    architecture = "memnet"

    def __init__(self, config: MemNetConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = MemNetConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a MemNetConfig or keyword arguments, not both")
        self.config = config
        c, m, r = config.channels, config.blocks, config.recursions
        self.gate_mode = "sum"
        inner = config.inner_channels
        self.extract = FeatureExtraction(inner, c)
        self.blocks = nn.ModuleList(MemoryBlock(i + 1, c, r, config.shared_recursions) for i in range(m))
        branches = m if config.multi_supervised else 1
        self.reconstruct = Reconstruction(c, inner, branches)
        if config.multi_supervised:
            self.branch_weights = nn.Parameter(torch.full((m,), 1.0 / m))
        else:
            self.register_parameter("branch_weights", None)
        self.reset_parameters()

    # -- facts used by the engine -------------------------------------------------
    @property
    def receptive_radius(self) -> int:
        """Pixels of context each side that influence one output pixel."""
        return receptive_radius_of(self.config)

    @property
    def alignment(self) -> int:
        """Tiles must start on multiples of this (the space-to-depth factor)."""
        return self.config.unshuffle

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    def reset_parameters(self) -> None:
        """MSRA (He) initialisation of convs, as in the paper; BN scale 1, shift 0."""
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        # the reconstruction conv starts small so the net starts near identity
        nn.init.normal_(self.reconstruct.conv.weight, std=1e-3)

    def features(self, x: torch.Tensor):
        """Yield B_1 .. B_M, keeping only the long-term memory the gates need."""
        long_term = [self.extract(x)]
        for block in self.blocks:
            b = block(long_term, self.gate_mode)
            yield b
            long_term.append(b)

    def forward(self, x: torch.Tensor, return_branches: bool = False):
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"MemNet expects (N, {self.config.in_channels}, H, W) input, got {tuple(x.shape)}"
            )
        s = self.config.unshuffle
        if s == 1:
            return self._forward_inner(x, return_branches)
        h, w = x.shape[-2:]
        out = self._forward_inner(space_to_depth(x, s), return_branches)
        if not return_branches:
            return depth_to_space(out, s, h, w)
        final, branches = out
        return depth_to_space(final, s, h, w), [depth_to_space(b, s, h, w) for b in branches]

    def _forward_inner(self, x: torch.Tensor, return_branches: bool):
        """The paper's network on ``x`` (already unshuffled when s > 1)."""
        if not self.config.multi_supervised:
            b_last = None
            for b_last in self.features(x):
                pass
            y = x + self.reconstruct(b_last, 0)
            return (y, [y]) if return_branches else y
        w = self.branch_weights
        final = None
        branches = []
        for m, b in enumerate(self.features(x)):
            y_m = x + self.reconstruct(b, m)
            if return_branches:
                branches.append(y_m)
            final = w[m] * y_m if final is None else final + w[m] * y_m
        return (final, branches) if return_branches else final


def multi_supervised_loss(
    final: torch.Tensor,
    branches: list[torch.Tensor],
    target: torch.Tensor,
    alpha: float | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The paper's loss: alpha*||y - gt||^2 + (1 - alpha)/M * sum_m ||y_m - gt||^2.

    ``alpha`` defaults to 1/(M+1). Squared errors are averaged over pixels and
    halved per sample as in Caffe's EuclideanLoss (1/2N sum ||.||^2).
    Returns the total loss and the per-branch losses (detached-friendly list).
    """
    m = len(branches)
    if m == 0:
        raise ValueError("multi_supervised_loss needs at least one branch output")
    if alpha is None:
        alpha = 1.0 / (m + 1)
    final_loss = euclidean_loss(final, target)
    branch_losses = [euclidean_loss(y, target) for y in branches]
    total = alpha * final_loss + (1.0 - alpha) / m * torch.stack(branch_losses).sum()
    return total, branch_losses


def euclidean_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Caffe EuclideanLoss normalised per pixel: mean of squared error / 2."""
    return 0.5 * F.mse_loss(pred.float(), target.float())
