"""The rate ladder `tokcodec encode --quality N` walks: operating points of (coding scale, bit level).

A model offers two ways to spend bits: more bits per token (its LFQ levels,
`LFQConfig.levels`) and more tokens, by coding the frames resampled to a
finer grid (`encode --scale`). Measured on the eval clips (bench/RESULTS.md,
"The rate ladder"), the shipped model turns extra tokens into quality far
better than extra bits per token, so its ladder walks mostly the scale: the
points were picked from the rate-distortion front over scale x level
(`bench/ladder_hull.py`), as resolution ladders of adaptive streaming are.

A model's ladder ships beside its weights as ``codec/models/NAME.ladder.json``;
a model without one has a ladder of its LFQ levels at scale 1.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tokcodec.codec import TokenizerConfig
from tokcodec.codec.registry import MODELS_DIR

MIN_SCALE, MAX_SCALE = 0.25, 4.0  # resampling factors accepted (`encode --scale`)


@dataclass(frozen=True)
class OperatingPoint:
    """One rung: code the frames resampled by `scale`, keeping `level`'s bits per token."""

    level: int  # index into the model's LFQConfig.level_bits
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not MIN_SCALE <= self.scale <= MAX_SCALE:
            raise ValueError(f"scale must be in {MIN_SCALE}..{MAX_SCALE}, got {self.scale}")


@dataclass(frozen=True)
class Ladder:
    """A model's operating points, lowest rate first, over its LFQ levels (`level_bits`).

    `max_upscaled_pixels`: a point that upscales never makes a coded frame
    larger than this (the scale drops to the largest quarter step that fits,
    never below 1): compute and memory grow with the coded pixels. The point
    then keeps its raw token bits per source pixel where the model's levels
    allow, by taking more bits per token (`for_frame`): on large frames the
    ladder goes on in bits once it cannot go on in scale.
    """

    points: tuple[OperatingPoint, ...]
    default: int
    level_bits: tuple[int, ...]
    max_upscaled_pixels: int = 1920 * 1080

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a ladder needs at least one operating point")
        if not 0 <= self.default < len(self.points):
            raise ValueError(f"default quality {self.default} is not a point of the ladder (0..{len(self.points) - 1})")
        bad = [p.level for p in self.points if not 0 <= p.level < len(self.level_bits)]
        if bad:
            raise ValueError(f"levels {bad} are not levels of the model (0..{len(self.level_bits) - 1})")

    def point(self, quality: int | None = None) -> OperatingPoint:
        """The operating point of `quality` (None: the default); refuses one the ladder lacks."""
        if quality is None:
            return self.points[self.default]
        if not 0 <= quality < len(self.points):
            raise ValueError(f"quality {quality} is not available (levels 0..{len(self.points) - 1}, see `tokcodec models`)")
        return self.points[quality]

    def for_frame(self, quality: int | None, width: int, height: int, max_scale: float = MAX_SCALE) -> OperatingPoint:
        """The point `quality` codes a `width` x `height` video at, after the pixel cap
        (and `max_scale`: a cap, as live ingest's `--ingest-max-scale` sets it)."""
        point = self.point(quality)
        s = point.scale
        if s <= 1 or (s <= max_scale and width * height * s * s <= self.max_upscaled_pixels):
            return point
        # Down to a quarter step: a resampling ratio like 2.08 cost the 800x600 test
        # card 8 VMAF points against 2 (bench/RESULTS.md, "The rate ladder").
        fits = math.floor(4 * math.sqrt(self.max_upscaled_pixels / (width * height))) / 4
        capped = max(1.0, min(s, fits, max_scale))
        budget = self.level_bits[point.level] * (s / capped) ** 2  # raw bits per token that keep bits per pixel
        return OperatingPoint(max([point.level] + [i for i, b in enumerate(self.level_bits) if b <= budget]), capped)

    @classmethod
    def of_levels(cls, config: TokenizerConfig) -> "Ladder":
        """The ladder of a model that ships none: its LFQ levels at scale 1."""
        lfq = config.lfq
        return cls(tuple(OperatingPoint(i) for i in range(len(lfq.level_bits))), lfq.default_quality, lfq.level_bits)


def ladder_path(model: str, directory: Path | None = None) -> Path:
    """Where a shipped model's ladder lives (in `directory`, default the shipped models)."""
    return (directory or MODELS_DIR) / f"{model}.ladder.json"


def model_ladder(config: TokenizerConfig) -> Ladder:
    """The rate ladder of the model `config` describes: its shipped one, else its LFQ levels at scale 1."""
    return _shipped(config.name, config.lfq.level_bits) or Ladder.of_levels(config)


@functools.lru_cache(maxsize=8)
def _shipped(model: str, level_bits: tuple[int, ...]) -> Ladder | None:
    path = ladder_path(model)
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    points = tuple(OperatingPoint(int(p["level"]), float(p["scale"])) for p in d["points"])
    try:
        return Ladder(points, int(d["default"]), level_bits,
                      int(d.get("max_upscaled_pixels", Ladder.max_upscaled_pixels)))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} ({model})") from None
