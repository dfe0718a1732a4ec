"""The CPU inference path that keeps MemNet's feature maps in a workspace and
adds each conv into its destination (models/conv_accumulate.py)."""

from __future__ import annotations

import platform

import pytest
import torch
import torch.nn.functional as F

from _nets import random_memnet
from napari_memnet.models import build_model, inference_module
from napari_memnet.models.conv_accumulate import Workspace, conv_add_, inplace_conv_available

CL = torch.channels_last


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_the_oneDNN_kernel_is_used_on_x86_linux():
    if platform.machine() not in ("x86_64", "AMD64") or not torch.backends.mkldnn.is_available():
        pytest.skip("the in-place oneDNN kernel is checked on x86-64 builds with oneDNN only")
    assert inplace_conv_available()


@pytest.mark.parametrize("padding,relu,bias", [(1, False, True), (1, True, True), (0, False, False)])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])  # contiguous: the fallback
def test_conv_add_equals_add_of_conv2d(padding, relu, bias, layout):
    k = 3 if padding else 1
    x = _rand(1, 6, 13, 11, seed=1).contiguous(memory_format=CL)
    w, b = _rand(7, 6, k, k, seed=2), (_rand(7, seed=3) if bias else None)
    acc = _rand(1, 7, 13, 11, seed=4)
    acc = acc.contiguous(memory_format=CL) if layout == "channels_last" else acc.contiguous()
    want = acc + F.conv2d(x, w, b, padding=padding)
    want = want.relu() if relu else want
    x_before = x.clone()
    with torch.inference_mode():
        got = conv_add_(acc, x, w, b, padding, relu=relu)
    assert got.data_ptr() == acc.data_ptr()  # written in place
    torch.testing.assert_close(acc, want, rtol=1e-5, atol=1e-4)
    assert torch.equal(x, x_before)


@pytest.mark.parametrize("config", [
    {"blocks": 3, "recursions": 2, "channels": 16},
    {"blocks": 2, "recursions": 3, "channels": 8, "multi_supervised": False},
])
def test_workspace_forward_equals_allocating_forward_and_the_network(config):
    torch.manual_seed(0)
    net = random_memnet(config["blocks"], config["recursions"], config["channels"])
    if config.get("multi_supervised") is False:
        net = build_model("memnet", config).eval()
    fused = inference_module(net)
    x = torch.rand(2, 1, 41, 37) * 255
    with torch.no_grad():
        want = net(x)
        allocating = fused.forward_allocating(x)
        in_workspace = fused.forward_in_workspace(x)
        default = fused(x)
    scale = want.abs().max()
    assert (in_workspace - want).abs().max() / scale < 1e-5
    assert (in_workspace - allocating).abs().max() / scale < 1e-5
    assert torch.equal(default, in_workspace)  # fp32 on the CPU takes the workspace path


def _big_allocations(fn, nbytes: int) -> int:
    """How many CPU allocations of at least ``nbytes`` ``fn`` makes (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(1 for e in prof.events() if e.cpu_memory_usage >= nbytes)


def test_workspace_forward_allocates_a_fixed_number_of_feature_maps():
    blocks, recursions, channels = 3, 3, 8
    fused = inference_module(random_memnet(blocks, recursions, channels))
    x = torch.rand(1, 1, 64, 64) * 255
    feature_map = channels * 64 * 64 * 4
    with torch.inference_mode():
        n_workspace = _big_allocations(lambda: fused.forward_in_workspace(x), feature_map)
        n_allocating = _big_allocations(lambda: fused.forward_allocating(x), feature_map)
    # act, t, h and the M + 1 memories; the allocating form makes ~10 per recursion
    assert n_workspace == blocks + 4
    assert n_allocating > 5 * blocks * recursions


def test_workspace_reuses_a_buffer_and_refuses_another_shape():
    ws = Workspace()
    like = torch.zeros(1, 1, 8, 6)
    a = ws.get("h", 4, like)
    assert a.shape == (1, 4, 8, 6) and a.is_contiguous(memory_format=CL)
    assert ws.get("h", 4, like).data_ptr() == a.data_ptr()
    assert ws.nbytes() == 4 * 8 * 6 * 4
    with pytest.raises(ValueError, match="workspace buffer 'h' has shape"):
        ws.get("h", 4, torch.zeros(1, 1, 9, 6))
