"""The MemNet family and RED30, checked against the paper's facts."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_memnet.models import (
    MemNet,
    RED30,
    build_model,
    count_conv_weights,
    inference_module,
    multi_supervised_loss,
)


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def tiny(**kw) -> MemNet:
    cfg = {"blocks": 3, "recursions": 2, "channels": 8}
    cfg.update(kw)
    torch.manual_seed(0)
    return build_model("memnet", cfg)


def test_m6r6_c64_has_the_papers_conv_weight_count():
    net = build_model("memnet", {"blocks": 6, "recursions": 6, "channels": 64, "in_channels": 1})
    conv_weights = count_conv_weights(net)
    total = sum(p.numel() for p in net.parameters())
    print(f"M6R6 C64: {conv_weights} conv weights, {total} parameters in all")
    assert conv_weights == 676_992
    # 80 conv layers with the recursions unrolled: M(2R+1)+2
    assert 6 * (2 * 6 + 1) + 2 == 80
    assert net.receptive_radius == 74
    # gate widths (m+R)*C: 448, 512, ..., 768
    assert [b.gate.conv.in_channels for b in net.blocks] == [448, 512, 576, 640, 704, 768]


def test_recursion_convs_are_shared_and_batchnorms_are_not():
    net = tiny()
    block = net.blocks[0].recursive
    assert len(block.bn_a) == 2 and block.bn_a[0] is not block.bn_a[1]
    names = [n for n, _ in net.named_parameters() if "conv_a" in n]
    assert len(names) == 2 * 3  # one weight + bias per block, not per recursion


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (31, 31)])
@pytest.mark.parametrize("arch", ["memnet", "memnet-plain", "red30"])
def test_output_shapes_for_odd_sizes(shape, arch):
    if arch == "red30":
        net = build_model("red30", {"layers": 4, "channels": 8})
    else:
        net = tiny(multi_supervised=arch == "memnet")
    x = torch.rand(2, 1, *shape)
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape


def test_gradients_reach_every_parameter():
    for net in (tiny(), tiny(multi_supervised=False), build_model("red30", {"layers": 4, "channels": 8})):
        net.train()
        x = torch.rand(2, 1, 12, 12)
        final, branches = net(x, return_branches=True)
        loss, _ = multi_supervised_loss(final, branches, torch.rand_like(x))
        loss.backward()
        missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        zero = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
        assert not missing, missing
        assert not zero, zero


def test_multi_supervised_outputs_and_weights():
    net = tiny().eval()
    assert torch.allclose(net.branch_weights, torch.full((3,), 1 / 3))
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        final, branches = net(x, return_branches=True)
    assert len(branches) == 3
    expect = sum(w * y for w, y in zip(net.branch_weights, branches))
    torch.testing.assert_close(final, expect, rtol=0, atol=1e-6)
    # the reconstruction conv is shared by the branches, each has its own BN
    assert len(net.reconstruct.bns) == 3
    assert sum(1 for n, _ in net.named_parameters() if n.startswith("reconstruct.conv")) == 2


def test_multi_supervised_loss_uses_alpha_one_over_m_plus_one():
    target = torch.zeros(1, 1, 4, 4)
    final = torch.ones_like(target)  # loss 0.5
    branches = [torch.full_like(target, 2.0), torch.full_like(target, 4.0)]  # 2.0, 8.0
    total, per_branch = multi_supervised_loss(final, branches, target)
    alpha = 1 / 3
    assert [float(b) for b in per_branch] == [2.0, 8.0]
    assert float(total) == pytest.approx(alpha * 0.5 + (1 - alpha) / 2 * 10.0)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_accumulated_gate_equals_concatenated_gate(mode):
    a = tiny()
    _randomise_bn(a)
    b = copy.deepcopy(a)
    a.gate_mode, b.gate_mode = "sum", "concat"
    getattr(a, mode)()
    getattr(b, mode)()
    x = torch.rand(2, 1, 15, 11)
    ya, _ = a(x, return_branches=True)
    yb, _ = b(x, return_branches=True)
    torch.testing.assert_close(ya, yb, rtol=0, atol=2e-6)
    if mode == "train":
        ya.square().sum().backward()
        yb.square().sum().backward()
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-5, msg=name)
        for (name, ba), bb in zip(a.named_buffers(), b.buffers()):  # running statistics updated alike
            torch.testing.assert_close(ba.float(), bb.float(), rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("multi", [True, False])
def test_folded_batchnorm_equals_unfused(multi):
    net = tiny(multi_supervised=multi)
    _randomise_bn(net, seed=3)
    net.eval()
    fused = inference_module(net)
    x = torch.rand(2, 1, 13, 17)
    with torch.no_grad():
        ref = net(x)
    out = fused(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    # bn_b of every recursion is folded into a per-recursion copy of conv_a
    assert len(fused.blocks_params[0].conv_a) == 2 * net.config.recursions


def test_fixed_seed_gives_deterministic_output():
    x = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        net = build_model("memnet", {"blocks": 2, "recursions": 2, "channels": 8}).eval()
        with torch.no_grad():
            outs.append(net(x))
    assert torch.equal(outs[0], outs[1])


def test_red30_structure():
    net = build_model("red30", {})
    assert isinstance(net, RED30)
    assert len(net.convs) == 15 and len(net.deconvs) == 15
    assert all(isinstance(d, torch.nn.ConvTranspose2d) for d in net.deconvs)
    assert net.receptive_radius == 30
    # residual learning: with the last deconv zeroed the net is the identity
    with torch.no_grad():
        net.deconvs[-1].weight.zero_()
        net.deconvs[-1].bias.zero_()
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(net(x), x)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("unet")
    with pytest.raises(ValueError, match="unknown memnet config keys"):
        build_model("memnet", {"depth": 3})
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        build_model("memnet", {"blocks": 0})
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\)"):
        tiny()(torch.rand(1, 3, 8, 8))


def test_fused_output_accumulates_in_float32_under_autocast():
    net = tiny()
    _randomise_bn(net, seed=5)
    fused = inference_module(net.eval())
    x = torch.rand(1, 1, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fused(x)
    assert y.dtype == torch.float32
    with torch.no_grad():
        ref = net(x)
    # bf16 convolutions, but no bf16 rounding of the image-scale sum (~4e-3 steps near 1.0)
    assert (y - ref).abs().max() < 0.05
