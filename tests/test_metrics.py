"""The rate-distortion benchmark's metrics (bench/metrics.py) on cases with known answers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import metrics  # noqa: E402

from tokcodec.streaming.rate_control import HysteresisSearch  # noqa: E402
from tokcodec.streaming.refine import DEFAULT_STEPS  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One thread: the metrics' many small convolutions gain nothing from more, and
    on a busy machine torch's worker threads can spin for a core that is not there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _video(frames: int = 3, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth random frames (uint8), so that SSIM-type metrics see structure."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(30, 220, size=(frames, h // 8 + 1, w // 8 + 1))
    up = np.kron(low, np.ones((8, 8)))[:, :h, :w]
    return np.clip(up + rng.normal(0, 6, size=up.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- PSNR


def test_psnr_of_known_mse() -> None:
    assert metrics.psnr(1.0) == pytest.approx(20 * math.log10(255))  # 48.1308 dB
    assert metrics.psnr(255.0**2) == pytest.approx(0.0)
    assert metrics.psnr(0.0) == math.inf


def test_psnr_y_of_constant_error_and_identity() -> None:
    ref = np.clip(_video(), 10, 240)
    dist = ref + np.uint8(2)  # an error of 2 everywhere: MSE 4
    assert metrics.psnr_y(ref, dist) == pytest.approx(10 * math.log10(255**2 / 4))
    assert metrics.psnr_y(ref, ref) == metrics.PSNR_CAP


def test_psnr_y_averages_per_frame_psnr() -> None:
    ref = np.full((2, 8, 8), 100, np.uint8)
    dist = ref.copy()
    dist[0] += 1  # MSE 1 in frame 0
    dist[1] += 4  # MSE 16 in frame 1
    expected = (metrics.psnr(1) + metrics.psnr(16)) / 2
    assert metrics.psnr_y(ref, dist) == pytest.approx(expected)


def test_rgb_to_y_limited_and_full_range() -> None:
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]]], np.uint8)
    assert metrics.rgb_to_y(rgb).tolist() == [[16, 235, round(16 + 219 * 0.299), round(16 + 219 * 0.114)]]
    assert metrics.rgb_to_y(rgb, full_range=True).tolist() == [[0, 255, round(255 * 0.299), round(255 * 0.114)]]
    assert metrics.rgb_to_y(rgb, "bt709", full_range=True)[0, 2] == round(255 * 0.2126)


# ---------------------------------------------------------------- MS-SSIM


def test_ms_ssim_of_identical_frames_is_one() -> None:
    v = _video(h=176, w=192)
    assert metrics.ms_ssim(v, v) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_drops_with_noise() -> None:
    v = _video(h=176, w=192)
    rng = np.random.default_rng(1)
    small = np.clip(v + rng.normal(0, 3, v.shape), 0, 255).astype(np.uint8)
    large = np.clip(v + rng.normal(0, 20, v.shape), 0, 255).astype(np.uint8)
    assert 1.0 > metrics.ms_ssim(v, small) > metrics.ms_ssim(v, large) > 0.0


def test_ms_ssim_scales_follow_frame_size() -> None:
    assert metrics.ms_ssim_scales(1080, 1920) == 5
    assert metrics.ms_ssim_scales(161, 400) == 5
    assert metrics.ms_ssim_scales(160, 400) == 4  # pytorch_msssim's bound: more than 160 for five
    assert metrics.ms_ssim_scales(144, 176) == 4  # carphone
    assert metrics.ms_ssim_scales(10, 10) == 0
    assert sum(metrics.ms_ssim_weights(4)) == pytest.approx(1.0)
    assert metrics.ms_ssim_weights(5) == metrics.MS_SSIM_WEIGHTS
    v = _video(h=144, w=176)
    assert metrics.ms_ssim(v, v) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.ms_ssim_frames(v, v, scales=5)


@pytest.mark.parametrize("scales", [5, 3])
def test_ms_ssim_matches_pytorch_msssim(scales: int) -> None:
    pm = pytest.importorskip("pytorch_msssim")
    ref = _video(frames=2, h=168, w=200, seed=2)
    rng = np.random.default_rng(3)
    dist = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255).astype(np.uint8)
    ours = metrics.ms_ssim_frames(ref, dist, scales=scales)
    weights = None if scales == 5 else list(metrics.ms_ssim_weights(scales))  # None: the library's own five
    theirs = pm.ms_ssim(torch.from_numpy(ref).float()[:, None], torch.from_numpy(dist).float()[:, None],
                        data_range=255, size_average=False, weights=weights)
    np.testing.assert_allclose(ours, theirs.double().numpy(), rtol=1e-5)


# ---------------------------------------------------------------- VMAF


def test_vmaf_of_identical_and_degraded_video() -> None:
    pytest.importorskip("vmaf_torch")
    vmaf = metrics.Vmaf()
    yy, xx = np.mgrid[0:64, 0:96]
    # Stripes and a moving checkerboard: edges and texture, as in real video.
    ref = np.clip(np.stack([108 + 50 * np.sin((xx + 2 * t) / 2.5) * np.cos(yy / 3.5) + 40 * (((xx + t) // 16 + yy // 16) % 2)
                            for t in range(3)]), 0, 255).astype(np.uint8)
    # Detail loss: 4x4 block averages, what VMAF's ADM and VIF features punish.
    blocky = np.kron(ref.reshape(3, 16, 4, 24, 4).mean(axis=(2, 4)), np.ones((4, 4))).astype(np.uint8)
    same = vmaf.frames(ref, ref)
    assert same.shape == (3,) and np.all(same > 90) and np.all(same <= 100)
    assert vmaf(ref, blocky) < vmaf(ref, ref) - 20


def test_vmaf_batches_give_the_whole_video_score() -> None:
    pytest.importorskip("vmaf_torch")
    vmaf = metrics.Vmaf()
    ref = _video(frames=5, h=64, w=80, seed=6)
    rng = np.random.default_rng(7)
    dist = np.clip(ref + rng.normal(0, 8, ref.shape), 0, 255).astype(np.uint8)
    whole = vmaf.model(torch.from_numpy(ref).float()[:, None], torch.from_numpy(dist).float()[:, None])[:, 0].numpy()
    np.testing.assert_allclose(vmaf.frames(ref, dist, batch=2), whole, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- BD-rate

# Four libx265 points from the README of the `bjontegaard` package (FAU-LMS), the
# usual textbook example; its PCHIP method, which reproduces the JCT-VC CTC Excel
# sheet, gives -4.417485350589045 % for these curves.
RATE_A = [9487.76, 4593.60, 2486.44, 1358.24]
PSNR_A = [40.037, 38.615, 36.845, 34.851]
RATE_T = [9787.80, 4469.00, 2451.52, 1356.24]
PSNR_T = [40.121, 38.651, 36.970, 34.987]


def test_bd_rate_of_identical_curves_is_zero() -> None:
    assert metrics.bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_of_ten_percent_fewer_bits_is_minus_ten() -> None:
    fewer = [0.9 * r for r in RATE_A]
    assert metrics.bd_rate(RATE_A, PSNR_A, fewer, PSNR_A) == pytest.approx(-10.0, abs=1e-9)
    assert metrics.bd_rate(fewer, PSNR_A, RATE_A, PSNR_A) == pytest.approx(100 / 0.9 - 100, abs=1e-9)


def test_bd_rate_textbook_example() -> None:
    assert metrics.bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T) == pytest.approx(-4.417485350589045, abs=1e-9)
    # Point order does not matter.
    assert metrics.bd_rate(RATE_A[::-1], PSNR_A[::-1], RATE_T, PSNR_T) == pytest.approx(-4.417485350589045, abs=1e-9)


def test_bd_rate_of_a_quality_shift_on_a_log_linear_curve() -> None:
    # Rate doubles every 6 dB; the test gives 1 dB more at every rate, so it
    # needs 2^(-1/6) of the bits for the same quality: exactly, since PCHIP
    # reproduces a straight line.
    q = np.array([30.0, 34.0, 38.0, 42.0])
    rate = 1000 * 2 ** ((q - 30) / 6)
    assert metrics.bd_rate(rate, q, rate, q + 1) == pytest.approx((2 ** (-1 / 6) - 1) * 100, abs=1e-9)


def test_bd_rate_is_undefined_without_two_points_or_overlap() -> None:
    with pytest.raises(ValueError, match="needs >= 2 points"):
        metrics.bd_rate(RATE_A, PSNR_A, [1000.0], [30.0])
    with pytest.raises(ValueError, match="overlap"):
        metrics.bd_rate(RATE_A, PSNR_A, [100.0, 200.0], [10.0, 12.0])


def test_rgb_to_cbcr_420_gives_the_usual_codes_and_averages_2x2() -> None:
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    cb, cr = metrics.rgb_to_cbcr_420(red)  # BT.601 limited range: red is Y' 81, Cb 90, Cr 240
    assert (cb.shape, int(cb[0, 0, 0]), int(cr[0, 0, 0])) == ((1, 1, 1), 90, 240)
    assert [int(c[0, 0, 0]) for c in metrics.rgb_to_cbcr_420(red, "bt601", True)] == [85, 255]
    half = np.concatenate([red, np.full((1, 2, 2, 3), 128, np.uint8)], axis=2)  # red beside grey, 2 x 4
    cb, cr = metrics.rgb_to_cbcr_420(np.concatenate([half, half[:, :1]], axis=1))  # 3 rows: the last one repeated
    assert cb.shape == (1, 2, 2) and int(cr[0, 1, 1]) == 128 and int(cr[0, 1, 0]) == 240


# ---------------------------------------------------------------- bench/rd.py end to end


def test_rd_measures_codecs_and_reports_a_failing_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import rd
    from media import smooth_frames

    from tokcodec.codec.io import VideoWriter

    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 25, 96, 64, crf=10) as w:
        for f in smooth_frames(6, 64, 96):
            w.write(f)
    out = tmp_path / "rd"
    code = rd.main(["--clips", str(clip), "--frames", "5", "--codecs", "tokcodec,x264,svtav1", "--tok-quality", "0", "--crf-x264", "0,30",
                    "--crf-svtav1", "70,50", "--no-vmaf", "--quiet", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    c = res["clips"]["clip.mp4"]
    points = {(p["codec"], p.get("crf", p.get("quality"))): p for p in c["points"]}
    assert set(points) == {("tokcodec", 0), ("x264", 0), ("x264", 30), ("svtav1", 50)}
    assert points[("x264", 0)]["psnr_y"] == metrics.PSNR_CAP  # CRF 0 is lossless in 8-bit x264
    assert points[("x264", 30)]["bpp"] < points[("x264", 0)]["bpp"]
    tok = points[("tokcodec", 0)]
    assert tok["bpp"] == pytest.approx(8 * tok["bytes"] / (5 * 96 * 64))
    assert tok["vmaf"] is None and tok["vmaf_neg"] is None and 0 < tok["msssim"] <= 1
    assert tok["sharpen"] == [0.5, 1.5, 2.0] and res["settings"]["tok_sharpen"] is None  # the encoder's default mask
    # the threshold of each chunk (one chunk of 5 frames), chosen per chunk by default
    assert res["settings"]["tok_hysteresis"] == "auto"
    assert len(tok["hysteresis"]) == 1 and tok["hysteresis"][0] in HysteresisSearch().thresholds
    # refined as `encode` refines by default, and each point says how
    assert res["settings"]["tok_refine"] == "default" and tok["refine_steps"] == DEFAULT_STEPS == 2
    assert c["errors"][0]["codec"] == "svtav1" and c["errors"][0]["crf"] == 70
    assert c["bd_rate_vs_x264"]["tokcodec"]["psnr_y"] == "n/a (needs >= 2 points)"
    assert c["rgb_ceiling_psnr_y"] > 35 and min(c["rgb_ceiling_psnr_cbcr"]) > 35
    # colour: the source's 4:2:0 planes against each output's
    assert points[("x264", 0)]["psnr_cb"] == points[("x264", 0)]["psnr_cr"] == metrics.PSNR_CAP
    assert 20 < tok["psnr_cb"] < metrics.PSNR_CAP and 20 < tok["psnr_cr"] < metrics.PSNR_CAP
    assert tok["psnr_ycbcr"] == pytest.approx((6 * tok["psnr_y"] + tok["psnr_cb"] + tok["psnr_cr"]) / 8)
    assert {Path(p).name for p in res["plots"]} == {"psnr_y.png", "msssim.png", "psnr_ycbcr.png"}
    md = capsys.readouterr().out
    assert md.startswith("## Rate-distortion") and "| libx264 | CRF 30 |" in md and "failed:" in md
    assert f"refinement steps the encoder's default ({DEFAULT_STEPS} for frames coded at up to 2,073,600 pixels" in md


def test_rd_gives_the_hysteresis_search_its_rate() -> None:
    import rd

    search = rd.tok_hysteresis(rd.parse_args(["--tok-hysteresis-rate", "1.5"]))
    assert isinstance(search, HysteresisSearch) and search.db_per_doubling == 1.5 and not search.decode
    assert rd.tok_hysteresis(rd.parse_args(["--tok-hysteresis", "auto-decode", "--tok-hysteresis-rate", "0.5"])).decode
    assert rd.tok_hysteresis(rd.parse_args([])) is None  # the encoder's default
    for bad in (["--tok-hysteresis", "0.2", "--tok-hysteresis-rate", "1"], ["--tok-hysteresis-rate", "-1"]):
        with pytest.raises(SystemExit):
            rd.parse_args(bad)


def test_bd_quality_is_the_mean_gain_at_equal_rate() -> None:
    q = np.array([30.0, 34.0, 38.0, 42.0])
    rate = 1000 * 2 ** ((q - 30) / 6)
    assert metrics.bd_quality(rate, q, rate, q + 1) == pytest.approx(1.0, abs=1e-9)
    assert metrics.bd_quality(RATE_A, PSNR_A, RATE_A, PSNR_A) == pytest.approx(0.0, abs=1e-12)
    # Defined for curves that share rates but not qualities (where bd_rate is not):
    # 20 dB more for 1.5x the bits is 20 - 6 log2(1.5) dB more at equal rate.
    assert metrics.bd_quality(rate, q, rate * 1.5, q + 20) == pytest.approx(20 - 6 * np.log2(1.5), abs=1e-9)
    with pytest.raises(ValueError, match="quality ranges do not overlap"):
        metrics.bd_rate(rate, q, rate * 1.5, q + 20)
    with pytest.raises(ValueError, match="rate ranges do not overlap"):
        metrics.bd_quality(rate, q, rate * 100, q)
