"""The decoders' unsharp mask of the luma (codec/sharpen.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokcodec.codec.luma_layer import planes
from tokcodec.codec.sharpen import DEFAULT_SHARPEN, NO_SHARPEN, Sharpen, sharpen


def textured(n: int = 2, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """Mid-grey frames with texture that sharpening cannot push past 0 or 255."""
    rng = np.random.default_rng(seed)
    return (96 + 64 * rng.random((n, h, w, 3))).astype(np.uint8)


def reference(frames: np.ndarray, amount: float, sigma: float, threshold: float, matrix: int) -> np.ndarray:
    """FORMAT.md's definition, written out pixel by pixel in float64."""
    kr, kb = ((0.299, 0.114), (0.2126, 0.0722))[matrix]
    r = max(1, math.ceil(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    out = np.empty_like(frames)
    for i, f in enumerate(frames.astype(np.float64)):
        y = kr * f[..., 0] + (1 - kr - kb) * f[..., 1] + kb * f[..., 2]
        p = np.pad(y, r, mode="edge")
        rows = sum(g[k] * p[:, k : k + y.shape[1]] for k in range(2 * r + 1))
        blurred = sum(g[k] * rows[k : k + y.shape[0]] for k in range(2 * r + 1))
        detail = y - blurred
        cored = np.sign(detail) * np.maximum(np.abs(detail) - threshold, 0)
        out[i] = np.clip(f + np.rint(amount * cored)[..., None], 0, 255)
    return out


@pytest.mark.parametrize("matrix,threshold", [(0, 0), (1, 0), (0, 2.5)])
def test_the_mask_is_the_formats_definition(matrix: int, threshold: float) -> None:
    frames = textured()
    got = sharpen(frames, Sharpen(0.75, 1.25, threshold), matrix).astype(int)
    want = reference(frames, 0.75, 1.25, threshold, matrix).astype(int)
    assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01  # float32 against float64 rounding
    assert np.abs(got - frames).max() > 5  # and it did something


def test_only_the_luma_changes() -> None:
    frames = textured()
    out = sharpen(frames, Sharpen(1, 1.5))
    y0, cb0, cr0 = planes(frames)
    y1, cb1, cr1 = planes(out)
    assert np.abs(y1 - y0).max() > 5
    assert np.abs(cb1 - cb0).max() < 1 and np.abs(cr1 - cr0).max() < 1  # each channel rounded by 0.5 at most


def test_flat_frames_edges_and_tiny_frames() -> None:
    flat = np.full((2, 9, 11, 3), 77, np.uint8)
    assert np.array_equal(sharpen(flat, DEFAULT_SHARPEN), flat)  # no detail to raise, edges extended
    edge = np.zeros((1, 16, 16, 3), np.uint8)
    edge[:, :, 8:] = 200
    out = sharpen(edge, Sharpen(1, 1))
    assert out[0, 5, 7, 0] == 0 and out[0, 5, 8, 0] > 200  # overshoot on the bright side, clipped on the dark
    assert out[0, 5, 0, 0] == 0 and out[0, 5, 15, 0] == 200  # far from the edge nothing moves
    assert sharpen(textured(1, 1, 1), DEFAULT_SHARPEN).shape == (1, 1, 1, 3)
    frames = textured()
    assert sharpen(frames, NO_SHARPEN) is frames


def test_header_codes_and_bad_values() -> None:
    assert DEFAULT_SHARPEN.codes == (8, 24, 32) and Sharpen.from_codes(8, 24, 32) == DEFAULT_SHARPEN
    assert not NO_SHARPEN and DEFAULT_SHARPEN
    assert Sharpen.of_amount(0.3) == Sharpen(0.3125, 1.5, 2)  # rounded to 1/16
    assert Sharpen.of_amount(0) == Sharpen.of_amount(0.01) == NO_SHARPEN
    for bad in (dict(amount=0.1, sigma=1), dict(amount=16, sigma=1), dict(amount=-1 / 16, sigma=1),
                dict(amount=1, sigma=0), dict(amount=1, sigma=1, threshold=16)):
        with pytest.raises(ValueError):
            Sharpen(**bad)
    with pytest.raises(ValueError, match="--sharpen"):
        Sharpen.of_amount(16)
