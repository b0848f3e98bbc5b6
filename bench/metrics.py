"""Quality and rate metrics for the rate-distortion benchmark (bench/rd.py).

Every metric works on 8-bit luma (Y') planes, uint8 arrays of shape
(frames, height, width), so that the reference and every codec's output are
compared in one colour space:

- `psnr_y`: mean over frames of the per-frame PSNR (peak 255); a frame equal
  to its reference counts as `PSNR_CAP` dB, so one perfect frame cannot make
  the mean infinite.
- `ms_ssim`: mean over frames of the per-frame MS-SSIM (Wang, Simoncelli and
  Bovik 2003) with the usual constants: Gaussian window 11, sigma 1.5,
  K = (0.01, 0.03), data range 255, 2x2 average pooling between scales and
  the five weights of the paper. Frames too small for five scales use fewer
  (see `ms_ssim_scales`). With five scales it equals `pytorch_msssim.ms_ssim`
  (checked in tests/test_metrics.py).
- `vmaf`: VMAF v0.6.1 through the `vmaf-torch` package, whose default model
  is compiled into the package (no download), per-frame scores clipped to
  [0, 100] as libvmaf does, averaged over frames.
- `bd_rate`: Bjontegaard delta rate with piecewise cubic Hermite (PCHIP)
  interpolation of log10(rate) as a function of quality, integrated over the
  quality range both curves cover (the JCT-VC/JVET common-test-conditions
  method).

`rgb_to_y` turns RGB frames (the tokcodec decoder's output) into Y' with the
matrix and range of the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


# ---------------------------------------------------------------- colour


def rgb_to_y(rgb: np.ndarray, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """8-bit luma Y' of uint8 RGB frames (..., 3), rounded to the nearest integer.

    `matrix` is 'bt601' (Kr 0.299, Kb 0.114) or 'bt709' (Kr 0.2126, Kb 0.0722);
    limited range maps RGB 0..255 to Y' 16..235, full range to 0..255.
    """
    kr, kb = _KR_KB[matrix]
    rgb = np.asarray(rgb, dtype=np.float32)
    y = kr * rgb[..., 0] + (1.0 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    if not full_range:
        y = 16.0 + y * (219.0 / 255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def mean_2x2(frames: np.ndarray) -> np.ndarray:
    """float32 means of 2 x 2 pixel blocks of (n, H, W, ...) frames, the last row
    or column repeated for an odd size: 4:2:0 subsampling."""
    x = np.asarray(frames, dtype=np.float32)
    if x.shape[1] % 2 or x.shape[2] % 2:
        x = np.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2)) + ((0, 0),) * (x.ndim - 3), mode="edge")
    n, h, w = x.shape[:3]
    return x.reshape(n, h // 2, 2, w // 2, 2, *x.shape[3:]).mean(axis=(2, 4))


def rgb_to_cbcr_420(rgb: np.ndarray, matrix: str = "bt601", full_range: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """8-bit Cb and Cr of uint8 RGB frames (n, H, W, 3) at 4:2:0: each the mean
    of a 2 x 2 block (the last row or column repeated for an odd size), rounded.

    Limited range maps the chroma to 16..240 around 128, full range to 0..255.
    """
    kr, kb = _KR_KB[matrix]
    rgb = mean_2x2(rgb)
    y = kr * rgb[..., 0] + (1.0 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    scale = 1.0 if full_range else 224.0 / 255.0
    cb = 128.0 + scale * (rgb[..., 2] - y) / (2 * (1 - kb))
    cr = 128.0 + scale * (rgb[..., 0] - y) / (2 * (1 - kr))
    return tuple(np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (cb, cr))  # type: ignore[return-value]


# ---------------------------------------------------------------- PSNR


def psnr(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB of a mean squared error; `inf` for an error of 0."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def frame_mse(ref: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Mean squared error of each frame of two (frames, H, W) arrays."""
    _check_pair(ref, dist)
    d = ref.astype(np.float64) - dist.astype(np.float64)
    return (d * d).reshape(d.shape[0], -1).mean(axis=1)


def psnr_y(ref: np.ndarray, dist: np.ndarray, cap: float = PSNR_CAP) -> float:
    """Mean over frames of the per-frame PSNR (dB) of two uint8 (frames, H, W) Y' arrays.

    A frame with no error counts as `cap` dB.
    """
    return float(np.mean([min(psnr(m), cap) for m in frame_mse(ref, dist)]))


# ---------------------------------------------------------------- MS-SSIM


def ms_ssim_scales(height: int, width: int, win_size: int = 11, max_scales: int = 5) -> int:
    """How many MS-SSIM scales a frame of this size allows (0 if none).

    A scale s (1-based) needs the smaller side to exceed (win_size - 1) * 2^(s-1),
    so that the Gaussian window still fits after s - 1 halvings; for five scales
    that is pytorch_msssim's own bound (more than 160 pixels). 176x144 gets 4.
    """
    side = min(height, width)
    scales = 0
    while scales < max_scales and side > (win_size - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """Weights of `scales` scales: the paper's five as they are (they sum to 1.0001),
    or for fewer scales the first `scales` of them renormalised to sum to 1."""
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"MS-SSIM needs 1 to {len(MS_SSIM_WEIGHTS)} scales, got {scales}")
    if scales == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS
    w = MS_SSIM_WEIGHTS[:scales]
    return tuple(x / sum(w) for x in w)


def _gauss_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of each channel of (N, C, H, W)."""
    c, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ms_ssim_frames(
    ref: np.ndarray | torch.Tensor,
    dist: np.ndarray | torch.Tensor,
    *,
    scales: int | None = None,
    data_range: float = 255.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k: tuple[float, float] = (0.01, 0.03),
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Per-frame MS-SSIM of two (frames, H, W) arrays.

    `scales=None` takes as many as the frame size allows, at most five
    (`ms_ssim_scales`), with `ms_ssim_weights(scales)`. As in the paper and in
    pytorch_msssim: contrast-structure terms of the finer scales and the full
    SSIM of the coarsest, each clamped at 0, raised to the weights and
    multiplied; 2x2 average pooling (padding odd sides) between scales.
    Computed in float32 (as pytorch_msssim does) unless `dtype` says otherwise.
    """
    x = torch.as_tensor(ref if isinstance(ref, torch.Tensor) else np.asarray(ref)).to(dtype)
    y = torch.as_tensor(dist if isinstance(dist, torch.Tensor) else np.asarray(dist)).to(dtype)
    if x.shape != y.shape or x.dim() != 3:
        raise ValueError(f"expected two (frames, H, W) arrays of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    allowed = ms_ssim_scales(x.shape[1], x.shape[2], win_size)
    scales = allowed if scales is None else scales
    if scales < 1 or scales > allowed:
        raise ValueError(f"a {x.shape[2]}x{x.shape[1]} frame allows {allowed} MS-SSIM scales with window {win_size}, asked {scales}")
    weights = torch.tensor(ms_ssim_weights(scales), dtype=torch.float64)
    x, y = x[:, None], y[:, None]
    g = _gauss_1d(win_size, sigma).to(dtype)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    terms = []
    for s in range(scales):
        mu_x, mu_y, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), g).unbind(1)
        var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
        cs_map = (2 * cov + c2) / (var_x + var_y + c2)
        if s < scales - 1:
            terms.append(torch.relu(cs_map.flatten(1).mean(1)))
            pad = [x.shape[2] % 2, x.shape[3] % 2]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        else:
            lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
            terms.append(torch.relu((lum * cs_map).flatten(1).mean(1)))
    stacked = torch.stack(terms, dim=0).to(torch.float64)  # (scales, frames)
    return torch.prod(stacked ** weights[:, None], dim=0).numpy()


def ms_ssim(ref: np.ndarray, dist: np.ndarray, *, scales: int | None = None, batch: int = 8) -> float:
    """Mean over frames of the per-frame MS-SSIM of two uint8 (frames, H, W) Y' arrays."""
    _check_pair(ref, dist)
    values = [ms_ssim_frames(ref[i : i + batch], dist[i : i + batch], scales=scales) for i in range(0, len(ref), batch)]
    return float(np.concatenate(values).mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM) (`inf` at 1): the axis its curves and BD-rates use."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)


# ---------------------------------------------------------------- VMAF


class Vmaf:
    """VMAF v0.6.1 of Y' videos through vmaf-torch, in batches of frames.

    The motion feature needs each frame's predecessor, so batches overlap by
    one frame and motion2 (the minimum of the motion to the previous and the
    next frame, 0 for the first, libvmaf's rule) is assembled over the whole
    video before the SVM regression.
    """

    def __init__(self, neg: bool = False) -> None:
        """`neg`: VMAF NEG ("no enhancement gain"), whose VIF and ADM features
        do not credit contrast or detail added beyond the reference's, as
        sharpening adds (what libvmaf's vmaf_v0.6.1neg model computes)."""
        from vmaf_torch import VMAF  # optional: the 'bench' extra

        self.model = VMAF(temporal_pooling=False, enable_motion=True, clip_score=True, NEG=neg).eval()

    @torch.no_grad()
    def frames(self, ref: np.ndarray, dist: np.ndarray, batch: int = 16) -> np.ndarray:
        """Per-frame VMAF of two uint8 (frames, H, W) Y' arrays."""
        _check_pair(ref, dist)
        n = len(ref)
        motion = np.zeros(n)
        adm, vif = [], []
        for i in range(0, n, batch):
            lo = max(i - 1, 0)
            r = torch.from_numpy(np.ascontiguousarray(ref[lo : i + batch])).float()[:, None]
            d = torch.from_numpy(np.ascontiguousarray(dist[i : i + batch])).float()[:, None]
            m = self.model.motion.motion(r)[:, 0].numpy()  # SAD to the previous frame, 0 for the batch's first
            motion[i : i + len(d)] = m[i - lo :]
            r = r[i - lo :]
            adm.append(self.model.compute_adm_score(r, d))
            vif.append(self.model.compute_vif_features(r, d))
        motion[0] = 0.0
        motion2 = motion.copy()
        if n > 2:
            motion2[1:-1] = np.minimum(motion[1:-1], motion[2:])
        scores = self.model.predict(torch.cat(adm), torch.from_numpy(motion2).float()[:, None], torch.cat(vif))
        return scores[:, 0].numpy().astype(np.float64)

    def __call__(self, ref: np.ndarray, dist: np.ndarray) -> float:
        """Mean over frames of the per-frame VMAF."""
        return float(self.frames(ref, dist).mean())


def luma_scores(ref: np.ndarray, dist: np.ndarray, vmaf: Vmaf, neg: Vmaf) -> np.ndarray:
    """PSNR-Y, MS-SSIM, VMAF and VMAF NEG of two Y' videos (n, H, W) uint8 (`vmaf`, `neg`: a
    `Vmaf()` and a `Vmaf(neg=True)`, made once: their models load slowly)."""
    return np.array([psnr_y(ref, dist), ms_ssim(ref, dist), vmaf(ref, dist), neg(ref, dist)])


def window_psnr_y(ref: np.ndarray, dist: np.ndarray, window: int = 32) -> list[float]:
    """PSNR-Y of two Y' videos over each `window` frames after the first: how quality holds
    through a clip (far from or near a chunk's start)."""
    return [psnr_y(ref[s:s + window], dist[s:s + window]) for s in range(1, len(ref) - 1, window)]


# ---------------------------------------------------------------- BD-rate


def _points(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(log10 rate, quality) of the finite points with a positive rate."""
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError("rates and qualities must be 1-D sequences of one length")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    return np.log10(r[ok]), q[ok]


def _merged(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) sorted by x, points of equal x merged into their mean y."""
    ux, inverse = np.unique(x, return_inverse=True)
    return ux, np.bincount(inverse, weights=y) / np.bincount(inverse)


def _curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log10 rate) sorted by quality, finite points only, equal qualities merged."""
    lr, q = _points(rate, quality)
    return _merged(q, lr)


def _quality_curve(rate: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(log10 rate, quality) sorted by rate, finite points only, equal rates merged (mean quality)."""
    return _merged(*_points(rate, quality))


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """Bjontegaard delta rate (%) of the test curve against the anchor.

    Each curve is log10(rate) as a function of quality, interpolated with a
    piecewise cubic Hermite polynomial (scipy's PchipInterpolator) and
    integrated exactly over the quality interval both curves cover; the result
    is 100 * (10^(mean difference) - 1). Negative: the test needs fewer bits
    for the same quality. Raises ValueError when either curve has fewer than
    two distinct finite points or the quality ranges do not overlap.
    """
    diff = _mean_gap(*_curve(rate_anchor, quality_anchor), *_curve(rate_test, quality_test), "quality")
    return float((10**diff - 1.0) * 100.0)


def bd_quality(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """Bjontegaard delta quality (BD-PSNR for PSNR): the mean quality difference
    of the test curve over the anchor at equal rate.

    Each curve is quality as a function of log10(rate), interpolated with a
    PCHIP polynomial and integrated over the log-rate interval both cover (so
    it is defined where bd_rate is not: curves that share rates but not
    qualities). Positive: the test is better at the same rate. Raises
    ValueError as bd_rate does, for rate ranges that do not overlap.
    """
    return _mean_gap(*_quality_curve(rate_anchor, quality_anchor), *_quality_curve(rate_test, quality_test), "rate")


def _mean_gap(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, axis: str) -> float:
    """Mean of y_test - y_anchor over the x interval both curves cover (PCHIP, integrated exactly);
    `axis` names x in the error raised when the curves do not overlap."""
    from scipy.interpolate import PchipInterpolator

    if len(xa) < 2 or len(xt) < 2:
        raise ValueError("needs >= 2 points")
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi > lo:
        raise ValueError(f"{axis} ranges do not overlap")
    ia = PchipInterpolator(xa, ya).integrate(lo, hi)
    it = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((it - ia) / (hi - lo))


# ---------------------------------------------------------------- helpers


def _check_pair(ref: np.ndarray, dist: np.ndarray) -> None:
    if ref.shape != dist.shape or ref.ndim != 3:
        raise ValueError(f"expected two (frames, H, W) arrays of one shape, got {ref.shape} and {dist.shape}")
