"""Inference form of MemNet with BatchNorm folded where the algebra allows.

MemNet is pre-activated (BN -> ReLU -> conv), so a BN can be folded only into
a conv whose output feeds that BN and nothing else. In a recursion r

    t = conv_a(ReLU(bn_a[r](h)));  h = h + conv_b(ReLU(bn_b[r](t)))

``bn_b[r]`` is such a BN: it is folded into a per-recursion copy of ``conv_a``
(the paper's shared one, or recursion r's own when recursions are untied):
W' = W * s, b' = b * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s. Every other BN acts on a tensor that also feeds a
residual sum or a later gate, so it stays, as a precomputed per-channel affine
(scale, shift) applied right before its ReLU. The gate is evaluated part by
part (never concatenated). ``fuse_memnet(model)`` returns an ``nn.Module`` with
the same ``forward`` contract as the eval-mode model.

On the CPU in float32 the forward keeps every C-channel feature map in a
``Workspace`` of M + 4 buffers and accumulates each conv into its destination
(``conv_accumulate.conv_add_``) instead of allocating ~400 temporaries per
call; see that module for why this matters (page faults), and
docs/performance.md for the measured effect. Other devices, and autocast,
take the allocating path, whose memory the device's caching allocator reuses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_accumulate import Workspace, affine_relu_into, conv_add_
from .memnet import MemNet, depth_to_space, space_to_depth


def _affine_of(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) so that bn(x) == x * scale + shift in eval mode."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
    return scale.detach().clone(), shift.detach().clone()


def _fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale, shift = _affine_of(bn)
    with torch.no_grad():
        w = conv.weight * scale.view(-1, 1, 1, 1)
        b = conv.bias * scale + shift
    return w.detach().clone(), b.detach().clone()


def _act(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """ReLU(x * scale + shift), per channel."""
    return F.relu(torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1)))


class FusedMemNet(nn.Module):
    architecture = "memnet"

    def __init__(self, model: MemNet):
        super().__init__()
        self.config = model.config
        cfg = model.config
        p = nn.ParameterList
        def par(t):
            return nn.Parameter(t, requires_grad=False)

        s, t = _affine_of(model.extract[0])
        self.ext = p([par(s), par(t), par(model.extract[2].weight.detach().clone()),
                      par(model.extract[2].bias.detach().clone())])
        self.blocks_params = nn.ModuleList()
        for block in model.blocks:
            rec, gate = block.recursive, block.gate
            bp = nn.Module()
            bp.a_affine = p()
            bp.conv_a = p()
            bp.conv_b = p()  # one (weight, bias) per recursion: the same shared conv R times, or each its own
            for r in range(cfg.recursions):
                s, t = _affine_of(rec.bn_a[r])
                bp.a_affine.extend([par(s), par(t)])
                conv_a, conv_b = rec.convs(r)
                w, b = _fold_bn_after_conv(conv_a, rec.bn_b[r])
                bp.conv_a.extend([par(w), par(b)])
                bp.conv_b.extend([par(conv_b.weight.detach().clone()), par(conv_b.bias.detach().clone())])
            gs, gt = _affine_of(gate.bn)
            c = cfg.channels
            bp.gate_parts = p()
            for k in range(gate.n_parts):
                sl = slice(k * c, (k + 1) * c)
                bp.gate_parts.extend([par(gs[sl].clone()), par(gt[sl].clone()),
                                      par(gate.conv.weight[:, sl].detach().clone())])
            bp.gate_bias = par(gate.conv.bias.detach().clone().view(1, -1, 1, 1))
            self.blocks_params.append(bp)
        self.rec_affine = p()
        for bn in model.reconstruct.bns:
            s, t = _affine_of(bn)
            self.rec_affine.extend([par(s), par(t)])
        self.rec_conv = p([par(model.reconstruct.conv.weight.detach().clone()),
                           par(model.reconstruct.conv.bias.detach().clone())])
        bw = model.branch_weights
        self.branch_weights = None if bw is None else par(bw.detach().clone())

    # the same facts as the network it was folded from (they read self.config)
    receptive_radius = MemNet.receptive_radius
    in_channels = MemNet.in_channels
    alignment = MemNet.alignment

    def _block(self, bp, long_term: list[torch.Tensor]) -> torch.Tensor:
        gp = bp.gate_parts
        acc = None
        for k, b in enumerate(long_term):
            term = F.conv2d(_act(b, gp[3 * k], gp[3 * k + 1]), gp[3 * k + 2])
            acc = term if acc is None else acc.add_(term)
        h = long_term[-1]
        n_long = len(long_term)
        for r in range(self.config.recursions):
            t = F.conv2d(_act(h, bp.a_affine[2 * r], bp.a_affine[2 * r + 1]),
                         bp.conv_a[2 * r], bp.conv_a[2 * r + 1], padding=1)
            h = h + F.conv2d(F.relu(t), bp.conv_b[2 * r], bp.conv_b[2 * r + 1], padding=1)
            k = n_long + r
            acc.add_(F.conv2d(_act(h, gp[3 * k], gp[3 * k + 1]), gp[3 * k + 2]))
        return acc.add_(bp.gate_bias)

    def _recon(self, b: torch.Tensor, branch: int) -> torch.Tensor:
        a = self.rec_affine
        return F.conv2d(_act(b, a[2 * branch], a[2 * branch + 1]), self.rec_conv[0], self.rec_conv[1], padding=1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.unshuffle
        h, w = x.shape[-2:]
        z = space_to_depth(x, s)  # the fast MemNet's blocks run on the unshuffled image (memnet.py)
        if z.device.type == "cpu" and z.dtype == torch.float32 and not _cpu_autocast_enabled():
            y = self.forward_in_workspace(z)
        else:
            y = self.forward_allocating(z)
        return depth_to_space(y, s, h, w)

    def forward_allocating(self, x: torch.Tensor) -> torch.Tensor:
        """The forward with a fresh tensor per op (CUDA, MPS, autocast)."""
        e = self.ext
        long_term = [F.conv2d(_act(x, e[0], e[1]), e[2], e[3], padding=1)]
        final = None
        for m, bp in enumerate(self.blocks_params):
            b = self._block(bp, long_term)
            long_term.append(b)
            if self.branch_weights is not None:
                # out of place with the fp32 input, so under autocast the sum stays fp32
                y = (x + self._recon(b, m)) * self.branch_weights[m]
                final = y if final is None else final.add_(y)
        if self.branch_weights is None:
            final = x + self._recon(long_term[-1], 0)
        return final


    @torch.no_grad()
    def forward_in_workspace(self, x: torch.Tensor) -> torch.Tensor:
        """The same forward with every C-channel map in one of M + 4 reused
        buffers: each conv adds into its destination in place."""
        ws = Workspace()
        c = self.config.channels
        e = self.ext
        act = ws.get("act", c, x)  # the activated input of the next conv
        t = ws.get("t", c, x)  # the inner activation of a recursion
        h = ws.get("h", c, x)  # the recursion state
        first = ws.get("memory0", c, x).zero_()
        conv_add_(first, affine_relu_into(ws.get("input", x.shape[1], x), x, e[0], e[1]), e[2], e[3], 1)
        long_term = [first]
        final = None
        for m, bp in enumerate(self.blocks_params):
            gp = bp.gate_parts
            acc = ws.get(f"memory{m + 1}", c, x).zero_()  # the gate's output: this block's memory
            for k, b in enumerate(long_term):
                conv_add_(acc, affine_relu_into(act, b, gp[3 * k], gp[3 * k + 1]), gp[3 * k + 2], None, 0)
            h.copy_(long_term[-1])
            n_long = len(long_term)
            for r in range(self.config.recursions):
                affine_relu_into(act, h, bp.a_affine[2 * r], bp.a_affine[2 * r + 1])
                conv_add_(t.zero_(), act, bp.conv_a[2 * r], bp.conv_a[2 * r + 1], 1, relu=True)
                conv_add_(h, t, bp.conv_b[2 * r], bp.conv_b[2 * r + 1], 1)
                k = n_long + r
                conv_add_(acc, affine_relu_into(act, h, gp[3 * k], gp[3 * k + 1]), gp[3 * k + 2], None, 0)
            acc.add_(bp.gate_bias)
            long_term.append(acc)
            if self.branch_weights is not None:
                a = self.rec_affine
                rec = F.conv2d(affine_relu_into(act, acc, a[2 * m], a[2 * m + 1]),
                               self.rec_conv[0], self.rec_conv[1], padding=1)
                y = rec.add_(x).mul_(self.branch_weights[m])
                final = y if final is None else final.add_(y)
        if self.branch_weights is None:
            a = self.rec_affine
            final = F.conv2d(affine_relu_into(act, long_term[-1], a[0], a[1]),
                             self.rec_conv[0], self.rec_conv[1], padding=1).add_(x)
        return final


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def fuse_memnet(model: MemNet) -> FusedMemNet:
    """Fold the BatchNorms of an (eval-mode) MemNet into an inference module."""
    return FusedMemNet(model).eval()
