"""Grow a trained MemNet deeper without changing what it computes.

A trained model's capacity can be raised by more recursions per memory block
(R) or more memory blocks (M), starting from the trained weights instead of a
fresh network. The grown network computes exactly what the trained one did
(in eval mode, with its running BatchNorm statistics), and training then only
has to learn what the new parts add:

* a new recursion r of block m reuses the block's shared convs (the paper's
  weight sharing) and starts with a copy of recursion r-1's BatchNorms; its
  short-term memory H^r enters the gate through zero gate weights;
* a new memory block starts as a copy of the last block (its recursive unit,
  its gate weights for the long-term and short-term memories it had); the
  gate's weights for the memories the copied block never saw start at zero,
  and its reconstruction branch starts with the last branch's BatchNorm and
  the branch weight w = 0, so the final output sum_m w_m y_m is unchanged
  while the new branch's own loss term (multi-supervision) trains it.

* untying (``shared_recursions`` True -> False): every recursion's own convs
  start as copies of the shared ones (same FLOPs, R times the conv weights of
  the recursive units).

Only multi-supervised nets can gain blocks (the plain net's output is f_rec of
the last block: a new block would change it). Channels and the space-to-depth
factor cannot change here.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .memnet import MemNet, MemNetConfig


def growth_problem(base: MemNetConfig, target: MemNetConfig) -> str | None:
    """Why ``base`` cannot grow into ``target`` (a sentence), or ``None`` when it can."""
    for name in ("in_channels", "channels", "unshuffle"):
        if getattr(base, name) != getattr(target, name):
            return f"{name} must stay {getattr(base, name)} (asked for {getattr(target, name)})"
    if target.multi_supervised != base.multi_supervised:
        return "multi-supervision cannot change"
    if target.shared_recursions and not base.shared_recursions:
        return "untied recursions cannot be tied again (their convs differ)"
    if target.blocks < base.blocks or target.recursions < base.recursions:
        return (f"a MemNet can only grow: M{base.blocks}R{base.recursions} cannot become "
                f"M{target.blocks}R{target.recursions}")
    if target.blocks > base.blocks and not base.multi_supervised:
        return "only a multi-supervised MemNet can gain memory blocks (the plain net's output would change)"
    return None


def _copy_bn(dst: torch.nn.BatchNorm2d, src: torch.nn.BatchNorm2d, dst_slice=slice(None), src_slice=slice(None)):
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[dst_slice] = getattr(src, name)[src_slice]


def _copy_part(dst_gate, dst_k: int, src_gate, src_k: int, c: int, weights: bool = True) -> None:
    """Gate part dst_k (C channels of the concatenation) takes src_gate's part src_k: its BatchNorm,
    and its 1x1 weights unless ``weights`` is False (a new part: they stay zero)."""
    d, s = slice(dst_k * c, (dst_k + 1) * c), slice(src_k * c, (src_k + 1) * c)
    _copy_bn(dst_gate.bn, src_gate.bn, d, s)
    if weights:
        dst_gate.conv.weight[:, d] = src_gate.conv.weight[:, s]


@torch.no_grad()
def grow_memnet(base: MemNet, blocks: int | None = None, recursions: int | None = None,
                shared_recursions: bool | None = None) -> MemNet:
    """A new MemNet of M = ``blocks``, R = ``recursions`` (and ``shared_recursions``; None: as ``base``)
    that computes what ``base`` does.

    ``base`` is not modified. ValueError (with the reason) when it cannot grow so."""
    if not isinstance(base, MemNet):
        raise ValueError(f"only a MemNet can grow, not {type(base).__name__}")
    old = base.config
    new_cfg = replace(old, blocks=blocks or old.blocks, recursions=recursions or old.recursions,
                      shared_recursions=old.shared_recursions if shared_recursions is None else shared_recursions)
    problem = growth_problem(old, new_cfg)
    if problem:
        raise ValueError(f"cannot grow this MemNet: {problem}")
    net = MemNet(new_cfg)
    c, r_old, r_new = old.channels, old.recursions, new_cfg.recursions
    net.extract.load_state_dict(base.extract.state_dict())
    net.reconstruct.conv.load_state_dict(base.reconstruct.conv.state_dict())
    for m, block in enumerate(net.blocks):
        src = base.blocks[min(m, old.blocks - 1)]  # a new block copies the last one
        rec, src_rec = block.recursive, src.recursive
        # one pair of convs when shared; untied, a new recursion starts from the source's last one
        for r in range(1 if rec.shared else r_new):
            for dst, source in zip(rec.convs(r), src_rec.convs(min(r, r_old - 1))):
                dst.load_state_dict(source.state_dict())
        for r in range(r_new):
            rec.bn_a[r].load_state_dict(src_rec.bn_a[min(r, r_old - 1)].state_dict())
            rec.bn_b[r].load_state_dict(src_rec.bn_b[min(r, r_old - 1)].state_dict())
        gate, src_gate = block.gate, src.gate
        gate.conv.weight.zero_()
        gate.conv.bias.copy_(src_gate.conv.bias)
        gate.bn.num_batches_tracked.copy_(src_gate.bn.num_batches_tracked)
        n_long, src_long = m + 1, src.index
        # long-term memories: the ones the source block saw keep their weights; a new one (B_m of
        # a new block m) gets the last long-term part's BatchNorm and zero weights
        for k in range(n_long):
            _copy_part(gate, k, src_gate, min(k, src_long - 1), c, weights=k < src_long)
        # short-term memories: H^1..H^R_old keep their weights, new recursions start at zero
        for r in range(r_new):
            _copy_part(gate, n_long + r, src_gate, src_long + min(r, r_old - 1), c, weights=r < r_old)
    if new_cfg.multi_supervised:
        for m in range(new_cfg.blocks):
            net.reconstruct.bns[m].load_state_dict(base.reconstruct.bns[min(m, old.blocks - 1)].state_dict())
        net.branch_weights.zero_()
        net.branch_weights[: old.blocks] = base.branch_weights
    else:
        net.reconstruct.bns[0].load_state_dict(base.reconstruct.bns[0].state_dict())
    return net.train(base.training)
