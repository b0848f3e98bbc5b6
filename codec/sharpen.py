"""Unsharp masking of the decoded luma: the detail a squared-error decoder smooths away.

The tokenizer's decoder and the encoder's refinement both minimise squared
error, and the frames they give are softer than the source: the least-squares
answer to an uncertain edge is a blurred one. Viewers, and VMAF (also its NEG
variant, built to resist sharpening), score such frames low. Like x264's
psy-rd, which trades a little PSNR for kept energy by default, the encoder
records an unsharp mask in the .tok header (`Sharpen`: since .tok 1.9) and
every decoder applies it last, after the coarse layers, at the displayed
size: Y' + amount * core(Y' - G_sigma * Y'), a Gaussian of `sigma` displayed
pixels, where core(d) = sign(d) max(|d| - threshold, 0) leaves the smallest,
noise-like detail (within `threshold` codes) unraised, as TV sharpeners core.
The same Y' change, rounded to whole codes, is added to R, G and B (Kr + Kg
+ Kb = 1), so Cb and Cr stay as they are (bar clipping at 0 and 255).

The default (amount 0.5, sigma 1.5, threshold 2) was picked on five training
clips at the default point: PSNR-Y -0.06 dB, MS-SSIM unchanged, VMAF +3.9,
VMAF NEG +2.8 on average (bench/RESULTS.md, "Unsharp masking of the decoded luma").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .luma_layer import luma

__all__ = ["Sharpen", "NO_SHARPEN", "DEFAULT_SHARPEN", "UNIT", "sharpen"]

UNIT = 16  # the header stores amount, sigma and threshold in 1/16ths (u8 each)


@dataclass(frozen=True)
class Sharpen:
    """An unsharp mask as a .tok header records it: `amount`, `sigma`
    (displayed pixels) and `threshold` (Y' codes), each a multiple of 1/16 up
    to 255/16; amount 0: none."""

    amount: float = 0.0
    sigma: float = 0.0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("amount", "sigma", "threshold"):
            v = getattr(self, name)
            if not (0 <= v <= 255 / UNIT and float(v * UNIT).is_integer()):
                raise ValueError(f"sharpen {name} must be a multiple of 1/{UNIT} in 0 .. {255 / UNIT}, not {v}")
        if self.amount and not self.sigma:
            raise ValueError("a sharpening amount needs a sigma above 0")

    def __bool__(self) -> bool:
        return self.amount > 0

    @classmethod
    def from_codes(cls, amount: int, sigma: int, threshold: int) -> "Sharpen":
        """From the header's u8 fields (1/16ths)."""
        return cls(amount / UNIT, sigma / UNIT, threshold / UNIT)

    @property
    def codes(self) -> tuple[int, int, int]:
        """The header's u8 fields (1/16ths)."""
        return round(self.amount * UNIT), round(self.sigma * UNIT), round(self.threshold * UNIT)

    @classmethod
    def of_amount(cls, amount: float) -> "Sharpen":
        """The default mask's sigma and threshold at another amount, rounded to 1/16 (`encode --sharpen`); 0: none."""
        if not 0 <= amount <= 255 / UNIT:
            raise ValueError(f"--sharpen must be in 0 .. {255 / UNIT}, not {amount}")
        amount = round(amount * UNIT) / UNIT
        return cls(amount, DEFAULT_SHARPEN.sigma, DEFAULT_SHARPEN.threshold) if amount else NO_SHARPEN


NO_SHARPEN = Sharpen()
DEFAULT_SHARPEN = Sharpen(0.5, 1.5, 2.0)


def _gaussian(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def sharpen(frames: np.ndarray, mask: Sharpen, matrix: int = 0) -> np.ndarray:
    """uint8 RGB frames (n, H, W, 3) with `mask` applied to their luma (the
    file's `matrix`: 0 BT.601, 1 BT.709); edges extended. No mask: the frames as they are."""
    if not mask:
        return frames
    g = _gaussian(mask.sigma)
    pad = len(g) // 2
    out = np.empty_like(frames)
    for i in range(len(frames)):  # a frame at a time: a 1080p chunk in float32 would take gigabytes
        y = torch.from_numpy(luma(frames[i : i + 1], matrix))[:, None]  # (1, 1, H, W)
        blurred = F.conv2d(F.pad(y, (pad, pad, pad, pad), mode="replicate"), g.view(1, 1, 1, -1))
        blurred = F.conv2d(blurred, g.view(1, 1, -1, 1))
        detail = y - blurred
        detail = torch.sign(detail) * torch.clamp(detail.abs() - mask.threshold, min=0)  # cored
        detail = torch.round(mask.amount * detail)[0, 0].to(torch.int16).numpy()  # whole codes: int16 from here
        np.clip(frames[i].astype(np.int16) + detail[..., None], 0, 255, out=out[i], casting="unsafe")
    return out
