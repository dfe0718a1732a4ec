"""The test images that hold pixels of the training set (benchmarks/train_test_overlap.py), on the real
Set12 and Train400: the BM3D comparison's list of seen images (benchmarks/bm3d_compare.py) is what the
search finds, and the search finds a crop that is there and nothing in an image that holds none."""

from __future__ import annotations

import pytest
from _benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def bench_modules():
    with benchmark_modules("train_test_overlap", "bm3d_compare") as modules:
        yield modules


@pytest.fixture(scope="module")
def planes(shared_data, bench_modules):
    load = bench_modules["train_test_overlap"]._planes
    return load(shared_data / "train" / "Train400"), load(shared_data / "test" / "Set12")


@pytest.fixture(scope="module")
def exact_set12(bench_modules, planes):
    """The full-resolution search of Train400's probes in Set12 (run once for the two tests that read it)."""
    train, set12 = planes
    return bench_modules["train_test_overlap"].find_overlaps(train, set12, count=5)


def test_set12_images_seen_in_training_are_those_bm3d_compare_leaves_out(bench_modules, exact_set12):
    found = exact_set12
    assert {f"Set12/{name}" for name in found} == set(bench_modules["bm3d_compare"].SEEN_IN_TRAINING)
    starfish = found["04"]
    assert starfish["train"] == "test_020" and starfish["mean_abs_diff"] == 0.0
    assert starfish["fraction"] == pytest.approx(0.29, abs=0.01)


def test_a_crop_of_the_same_photograph_is_found_where_it_is(bench_modules, planes):
    _, set12 = planes
    photo = set12["08"]  # 512 x 512: two overlapping windows of it play a training crop and a test image
    crop = photo[300:480, 20:200].copy()
    test = {"window": photo[200:456, 0:256].copy(), "01": set12["01"]}
    found = bench_modules["train_test_overlap"].find_overlaps({"crop": crop}, test)
    assert set(found) == {"window"}
    assert found["window"]["box"] == [100, 20, 256, 200]  # the crop's rows 300..480 clipped to the window's 200..456
    assert found["window"]["fraction"] == pytest.approx(156 * 180 / 256**2, abs=1e-4)
    assert found["window"]["mean_abs_diff"] == 0.0


def test_a_test_image_cut_from_a_larger_training_photograph_is_found_both_ways(bench_modules, planes):
    _, set12 = planes
    photo = set12["08"]  # 512 x 512, a whole "training photograph"
    # a 100 x 100 test image between the photograph's probes (at 120..136 and 248..264 on each axis)
    window = photo[140:240, 140:240].copy()
    overlap = bench_modules["train_test_overlap"].find_overlaps
    assert overlap({"photo": photo}, {"window": window, "01": set12["01"]}) == {}  # no training probe inside it
    found = overlap({"photo": photo}, {"window": window, "01": set12["01"]}, both_ways=True)
    assert set(found) == {"window"}
    assert found["window"] == {"train": "photo", "box": [0, 0, 100, 100], "fraction": 1.0, "mean_abs_diff": 0.0}


def test_the_coarse_search_finds_what_the_exact_one_does_and_places_it_to_the_pixel(bench_modules, planes,
                                                                                     exact_set12):
    train, set12 = planes
    overlap = bench_modules["train_test_overlap"].find_overlaps
    # the starfish, with the same box and difference
    assert overlap(train, set12, coarse=4, ncc_min=0.85) == exact_set12
    photo = set12["08"]
    crop = photo[301:481, 23:203].copy()  # offsets that are no multiple of the factor
    found = overlap({"crop": crop}, {"window": photo[200:456, 0:256].copy(), "01": set12["01"]}, coarse=4, ncc_min=0.85)
    assert found == {"window": {"train": "crop", "box": [101, 23, 256, 203],
                                "fraction": round(155 * 180 / 256**2, 4), "mean_abs_diff": 0.0}}


def test_the_pixel_check_allows_another_gray_conversion_only_when_asked(bench_modules, planes):
    _, set12 = planes
    photo = set12["08"]
    crop = photo[301:481, 23:203].copy()
    as_y = (16 + 219 / 255 * photo[200:456, 0:256]).astype("float32")  # the test image as a Y plane
    overlap = bench_modules["train_test_overlap"].find_overlaps
    assert overlap({"crop": crop}, {"window": as_y}, coarse=4, ncc_min=0.85) == {}  # 5.7 levels apart on average
    found = overlap({"crop": crop}, {"window": as_y}, coarse=4, ncc_min=0.85, affine=True)
    assert found["window"]["box"] == [101, 23, 256, 203] and found["window"]["mean_abs_diff"] < 1e-3


def test_a_flat_test_region_does_not_match_at_a_gain_near_zero(bench_modules, shared_data):
    # Set14's monarch has a flat sky where Train400's test_133 (clouds) fitted at a gain near 0 to
    # 2.96 gray levels before the gain was bounded
    tool = bench_modules["train_test_overlap"]
    from napari_memnet.evaluate import load_plane

    monarch = {"monarch": load_plane(shared_data / "test" / "Set14" / "monarch.png", "denoise").astype("float32")}
    clouds = {"test_133": load_plane(shared_data / "train" / "Train400" / "test_133.png", "denoise").astype("float32")}
    assert tool.find_overlaps(clouds, monarch, coarse=4, ncc_min=0.85, affine=True, both_ways=True) == {}
