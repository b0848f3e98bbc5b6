"""Where a long chunk ends early: a moving picture pays for a new intra latent frame, a steady one does not.

Every chunk starts with a latent frame coded alone (an intra frame), which
costs more bits than the latent frames after it and gives the frames that
follow it a sharper start. On a steady picture (a head and shoulders, a
static shot) the intra frame costs two to ten times a later latent frame
and the later ones keep the quality: longer chunks spend fewer bits for the
same picture. On a moving one (cyclists, a pan) a later latent frame costs
nearly as much as an intra frame, and a new chunk's first frames come out
up to 2 dB better than the same frames far into a chunk. (bench/RESULTS.md,
"Chunks that end early where the picture moves".)

So a chunk of up to `chunk_frames` frames ends after its first
`ChunkSplit.frames` where the first latent frame of those, coded alone,
costs less than `ratio` times the mean of the latent frames after it, as
x264 makes a frame an I frame where a P frame would cost nearly as much:
there the next chunk's intra frame is cheap. A chunk that goes on is weighed
again every `frames - 1` frames (after 65 and 97 frames of a 129-frame
chunk), its first latent frame against the ones since the last point: a
picture that starts moving ends its chunk there. The decision is the
encoder's; the format's chunks may be of any length up to the header's.
`encode_file` and `serve`'s live ingest both take it, on the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ChunkSplit", "DEFAULT_SPLIT_RATIO"]

# The ratio per 33-frame window of the unrefined tokens (threshold 0.2) at qualities 3-5: 1.00-1.19
# on bikes and 0.99-1.09 on motion.mov (moving: 65-frame chunks lose or are even), 1.50-1.70 on
# carphone and 1.47-1.96 on oa4_launch (steady: 65-frame chunks pay). Between, in log.
DEFAULT_SPLIT_RATIO = 1.35


@dataclass(frozen=True)
class ChunkSplit:
    """A chunk ends after its first `frames` frames (1 + 4k for the default
    model), or after a further multiple of `frames - 1`, where the first
    latent frame of its tokens costs less than `ratio` times the mean of the
    latent frames since the last such point (the encoder's tokens before any
    refinement, quantised with the hysteresis search's first threshold or the
    fixed one)."""

    frames: int = 33
    ratio: float = DEFAULT_SPLIT_RATIO

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"--chunk-split must be 0 (never) or more than 1 frame, got {self.frames}")

    def points(self, chunk_frames: int) -> range:
        """The frame counts after which a chunk of up to `chunk_frames` frames may end here
        (33, 65 and 97 for 129)."""
        return range(self.frames, chunk_frames, self.frames - 1)

    def window(self, temporal_factor: int) -> int:
        """Latent frames from one split point to the next, for a model whose latent frames
        follow every `temporal_factor` frames: the `window` `ends` weighs at a point."""
        return (self.frames - 1) // temporal_factor

    def ends(self, tokens: np.ndarray, payload_bytes: Callable[[np.ndarray], int], window: int | None = None) -> bool:
        """Whether the chunk whose tokens (T', H', W') up to a split point are `tokens` ends there:
        the first latent frame against the last `window` (None: all after the first), coded after
        the ones before them; `payload_bytes`: what the entropy coder writes for a token grid
        (`TokWriter.payload_size`)."""
        since = 1 if window is None else max(1, len(tokens) - window)
        if len(tokens) <= since:
            return False
        first = payload_bytes(tokens[:1])
        before = first if since == 1 else payload_bytes(tokens[:since])
        later = (payload_bytes(tokens) - before) / (len(tokens) - since)
        return first < self.ratio * later
