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

    def __post_init__(self):
        for name in ("in_channels", "blocks", "recursions", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MemNet {name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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

    ``conv_a``/``conv_b`` are shared by the R recursions; ``bn_a[r]``/``bn_b[r]``
    belong to recursion r alone."""

    def __init__(self, channels: int, recursions: int):
        super().__init__()
        self.recursions = recursions
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_a = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(recursions))
        self.bn_b = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(recursions))

    def step(self, h: torch.Tensor, r: int) -> torch.Tensor:
        t = self.conv_a(_bn_relu(h, self.bn_a[r]))
        return h + self.conv_b(_bn_relu(t, self.bn_b[r]))


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
    def __init__(self, index: int, channels: int, recursions: int):
        super().__init__()
        self.index = index  # m, 1-based: the block sees m long-term memories
        self.recursive = RecursiveUnit(channels, recursions)
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
        self.extract = FeatureExtraction(config.in_channels, c)
        self.blocks = nn.ModuleList(MemoryBlock(i + 1, c, r) for i in range(m))
        branches = m if config.multi_supervised else 1
        self.reconstruct = Reconstruction(c, config.in_channels, branches)
        if config.multi_supervised:
            self.branch_weights = nn.Parameter(torch.full((m,), 1.0 / m))
        else:
            self.register_parameter("branch_weights", None)
        self.reset_parameters()

    # -- facts used by the engine -------------------------------------------------
    @property
    def receptive_radius(self) -> int:
        """Pixels of context each side that influence one output pixel."""
        return 1 + self.config.blocks * 2 * self.config.recursions + 1

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
