"""``memnet bench`` end to end with a tiny saved model and tiny images (each case
really runs in its own subprocess)."""

from __future__ import annotations

import json

import pytest

from _nets import random_memnet
from napari_memnet.benchmark import GIB, reference_bytes, run_benchmark
from napari_memnet.cli import main
from napari_memnet.models.files import save_model


@pytest.mark.slow
def test_bench_cli_writes_json_with_both_cases(tmp_path, capsys):
    save_model(random_memnet(2, 2, 8, seed=1), "bench-tiny", task="denoise")
    out = tmp_path / "bench.json"
    code = main(["bench", "--sizes", "24", "--model", "bench-tiny", "--device", "cpu", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speed-up x" in printed and "reference:" in printed
    results = json.loads(out.read_text())
    assert [row["size"] for row in results["rows"]] == [24]
    for row in results["rows"]:
        res, ref = row["restore"], row["reference"]
        assert res["complete"] and res["tiles_done"] == res["tiles_total"] == 1
        assert res["megapixels"] == ref["megapixels"] == row["size"] ** 2 / 1e6
        for case in (res, ref):
            assert case["mp_per_s"] > 0 and 0.05 < case["peak_rss_gib"] < 8
        assert row["speedup"] == res["mp_per_s"] / ref["mp_per_s"]
    assert results["environment"]["torch_threads"] >= 1


def test_stopped_case_reports_partial_tiles_and_a_bound():
    save_model(random_memnet(2, 2, 8, seed=2), "bench-tiny2", task="denoise")
    results = run_benchmark([32], model="bench-tiny2", tile=8, reference=False, max_tiles=2, log=lambda _t: None)
    res = results["rows"][0]["restore"]
    assert res["complete"] is False and res["tiles_done"] == 2 and res["tiles_total"] == 16
    assert res["megapixels"] == 32 * 32 / 1e6 * 2 / 16
    assert res["unwritten_bytes"] == int(32 * 32 * 5 * (1 - 2 / 16))
    assert results["rows"][0]["reference"] is None


def test_reference_memory_estimate_grows_with_area():
    net = random_memnet(6, 6, 64)
    assert reference_bytes(net, 2048) == 4 * reference_bytes(net, 1024)
    assert reference_bytes(net, 2048) > 16 * GIB  # why the 2048 px reference needs a big machine


def test_bad_sizes_are_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--sizes", "12,x"])
    assert exc.value.code == 2
    assert "comma-separated positive sizes" in capsys.readouterr().err


def test_precision_check_on_real_set12_crops(shared_data, capsys):
    save_model(random_memnet(2, 2, 8, seed=3, residual_std=4e-4), "bench-tiny3", task="denoise")
    code = main(["bench", "--precision-check", str(shared_data / "test" / "Set12"), "--model", "bench-tiny3",
                 "--crop", "16"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fp32:") and "+0.0000 dB" in lines[0] and "0.00e+00" in lines[0]
    assert lines[1].startswith("bf16:")


def test_conv_flops_count_shared_recursions_every_time():
    from napari_memnet.benchmark import conv_flops_per_pixel

    # M2R2 C8: extract 1*8*9, 2 blocks x 2 recursions x 2 convs x 8*8*9, 2 branch reconstructions 8*1*9,
    # gates (1+2)*8*8 and (2+2)*8*8 multiply-adds per pixel
    conv3 = 1 * 8 * 9 + 2 * 2 * 2 * 8 * 8 * 9 + 2 * 8 * 9
    gates = (3 + 4) * 8 * 8
    net = random_memnet(2, 2, 8)
    flops = conv_flops_per_pixel(net)
    assert flops == {"total": 2 * (conv3 + gates), "conv3x3": 2 * conv3}
    assert net.gate_mode == "sum"


def test_versus_times_two_models_alternating():
    """``memnet bench --versus``: the second model's restore case right after the first, and the ratio."""
    from napari_memnet.models import build_model

    save_model(build_model("memnet", {"blocks": 2, "recursions": 2, "channels": 8, "unshuffle": 2}), "bench-fast",
               task="denoise")
    save_model(random_memnet(2, 2, 8, seed=3), "bench-paper", task="denoise")
    lines = []
    results = run_benchmark([48], model="bench-fast", reference=False, versus="bench-paper", versus_max_tiles=1,
                            tile=16, log=lines.append)
    row = results["rows"][0]
    assert results["versus"] == "bench-paper" and row["versus"]["model"] == "bench-paper"
    assert row["versus"]["tiles_done"] == 1 and row["restore"]["complete"]
    assert row["ratio"] == pytest.approx(row["restore"]["mp_per_s"] / row["versus"]["mp_per_s"])
    assert "versus bench-paper" in lines[0]
    # the attained convolution rate beside the CPU's measured matrix-product rate
    env = results["environment"]
    assert env["matmul_gflops"] > 0 and env["cpu"]["name"] == env["processor"]
    assert row["gflops"] == pytest.approx(row["restore"]["mp_per_s"] * results["flops_per_pixel"]["total"] / 1e3)
    assert lines[-1].startswith("convolution GFLOP/s of restore: 48 px ") and "matrix products" in lines[-1]
