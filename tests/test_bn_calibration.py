"""BatchNorm recalibration: exact population statistics, weights untouched."""

from __future__ import annotations

import pytest
import torch

from napari_memnet.models import build_model
from napari_memnet.training.bn_calibration import recalibrate_batchnorm


def test_running_stats_become_the_average_over_the_batches():
    torch.manual_seed(0)
    net = build_model("memnet", {"blocks": 2, "recursions": 2, "channels": 8})
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.rand(4, 1, 12, 12) * (i + 1) for i in range(3)]
    assert recalibrate_batchnorm(net, iter(batches)) == 3
    assert not net.training
    input_bn = net.extract[0]  # the first BN sees the images themselves
    expected_mean = torch.stack([b.mean() for b in batches]).mean()
    expected_var = torch.stack([b.var() for b in batches]).mean()  # unbiased per batch, as BatchNorm keeps
    torch.testing.assert_close(input_bn.running_mean[0], expected_mean)
    torch.testing.assert_close(input_bn.running_var[0], expected_var)
    for key, value in net.state_dict().items():
        if key in weights:
            assert torch.equal(value, weights[key]), key
    assert input_bn.momentum == 0.1  # restored


def test_no_batches_is_an_error():
    net = build_model("memnet", {"blocks": 1, "recursions": 1, "channels": 4})
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_batchnorm(net, [])
