"""The Y' code values a source's pixels span, and RGB that keeps them.

Limited-range ("TV") video puts black at Y' 16 and white at 235, but cameras
often record above 235 ("super-whites", up to 255) and sometimes below 16.
The usual Y'CbCr -> RGB conversion clips them, and x264 keeps them, so a
codec that works in RGB loses to it on such sources for a reason unrelated to
coding (bench/RESULTS.md, "Why realshort is so far behind": 10% of
realshort's Y' samples are above 235).

When a source uses that headroom, the encoder maps a wider Y' span to RGB 0..1
instead (`LumaRange`, recorded in the .tok header): white at Y' 255, black at
Y' 0. Inside the codec the picture is then slightly lower in contrast; the
decoder maps its RGB back to the same Y' codes, so the super-whites come
back, and `to_display` gives the RGB a player shows (clipped as usual).
Sources that do not need it keep the usual conversion, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOMINAL_BLACK, NOMINAL_WHITE = 16, 235
# Luma weights (Kr, Kb) of the two matrices video uses; their index in
# MATRICES is the code a .tok header stores.
KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
MATRICES = ("bt601", "bt709")
# Chroma spans 16..240 around 128 in limited range.
CHROMA_SCALE = 224.0
# An end of the span is widened when clipping it alone costs the picture's Y'
# more than this PSNR (dB). At 38 dB clipping adds about a tenth to the squared
# error of coding at the default point (~26 dB), about what the lower contrast
# costs a clip without super-whites; realshort's cost 33 dB (bench/RESULTS.md,
# "Keeping the source's super-whites").
WIDEN_BELOW_DB = 38.0


@dataclass(frozen=True)
class LumaRange:
    """Y' codes that the codec's RGB 0 and 1 stand for, and the source's matrix.

    The nominal (16, 235) means the usual conversion (swscale's, with the
    source's own matrix); any other span is converted by `yuv_to_rgb` and
    `rgb_to_yuv` with `matrix` ('bt601' or 'bt709')."""

    black: int = NOMINAL_BLACK
    white: int = NOMINAL_WHITE
    matrix: str = "bt601"

    def __post_init__(self) -> None:
        if not 0 <= self.black < self.white <= 255:
            raise ValueError(f"luma range must have 0 <= black < white <= 255, got {self.black}..{self.white}")
        if self.matrix not in KR_KB:
            raise ValueError(f"unknown matrix {self.matrix!r} (bt601 or bt709)")

    @classmethod
    def from_codes(cls, black: int, white: int, matrix_code: int) -> LumaRange:
        """The span a .tok header records (its matrix as an index of MATRICES)."""
        return cls(black, white, MATRICES[matrix_code])

    @property
    def matrix_code(self) -> int:
        """The matrix as the .tok header stores it."""
        return MATRICES.index(self.matrix)

    @property
    def nominal(self) -> bool:
        """True for the usual 16..235: frames are converted as players do."""
        return (self.black, self.white) == (NOMINAL_BLACK, NOMINAL_WHITE)


NOMINAL = LumaRange()


def _clip_psnr(excess: np.ndarray) -> float:
    """PSNR (dB) of clipping the given per-sample excess alone."""
    mse = float(np.mean(np.square(excess, dtype=np.float64)))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def choose_luma_range(y: np.ndarray, matrix: str, widen_below_db: float = WIDEN_BELOW_DB) -> LumaRange:
    """The span to code a limited-range source in, from some of its Y' planes.

    Each end is widened to the full code range (white 255, black 0) when
    clipping it would cost more than `widen_below_db` dB of Y' PSNR;
    otherwise it stays nominal."""
    y = np.asarray(y, dtype=np.int16)
    white = 255 if _clip_psnr(np.maximum(y - NOMINAL_WHITE, 0)) < widen_below_db else NOMINAL_WHITE
    black = 0 if _clip_psnr(np.maximum(NOMINAL_BLACK - y, 0)) < widen_below_db else NOMINAL_BLACK
    return LumaRange(black, white, matrix)


def yuv_to_rgb(planes: np.ndarray, span: LumaRange) -> np.ndarray:
    """uint8 RGB (H, W, 3) of 8-bit Y'CbCr 4:4:4 planes (3, H, W) in `span`."""
    p = planes.astype(np.float32)
    return _rgb(p[0], p[1], p[2], span)


def rgb_to_yuv(rgb: np.ndarray, span: LumaRange) -> np.ndarray:
    """8-bit Y'CbCr 4:4:4 planes (3, H, W) of uint8 RGB (H, W, 3) in `span`:
    the inverse of `yuv_to_rgb`."""
    y, cb, cr = _ycbcr(rgb, span)
    return _to_uint8(np.stack([y, cb, cr]))


def to_display(rgb: np.ndarray, span: LumaRange) -> np.ndarray:
    """The RGB a player shows for codec RGB in `span` (..., 3): its Y'CbCr
    codes read the usual way, super-whites and -blacks clipped."""
    if span.nominal:
        return rgb
    return _rgb(*_ycbcr(rgb, span), LumaRange(matrix=span.matrix))


def _rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, span: LumaRange) -> np.ndarray:
    """uint8 RGB (..., 3) of (unrounded) Y', Cb, Cr codes in `span`."""
    kr, kb = KR_KB[span.matrix]
    y = (y - span.black) / (span.white - span.black)
    r = y + (2.0 * (1.0 - kr) / CHROMA_SCALE) * (cr - 128.0)
    b = y + (2.0 * (1.0 - kb) / CHROMA_SCALE) * (cb - 128.0)
    g = (y - kr * r - kb * b) / (1.0 - kr - kb)
    return _to_uint8(np.stack([r, g, b], axis=-1) * 255.0)


def _ycbcr(rgb: np.ndarray, span: LumaRange) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unrounded Y', Cb, Cr codes of uint8 RGB (..., 3) in `span`."""
    kr, kb = KR_KB[span.matrix]
    c = rgb.astype(np.float32) / 255.0
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    y = kr * r + (1.0 - kr - kb) * g + kb * b
    cb = 128.0 + CHROMA_SCALE * (b - y) / (2.0 * (1.0 - kb))
    cr = 128.0 + CHROMA_SCALE * (r - y) / (2.0 * (1.0 - kr))
    return span.black + y * (span.white - span.black), cb, cr


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
