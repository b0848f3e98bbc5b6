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
there the next chunk's intra frame is cheap. The decision is the
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
    model) where the first latent frame of their tokens costs less than
    `ratio` times the mean of the latent frames after it (the encoder's
    tokens before any refinement, quantised with the hysteresis search's
    first threshold or the fixed one)."""

    frames: int = 33
    ratio: float = DEFAULT_SPLIT_RATIO

    def ends(self, tokens: np.ndarray, payload_bytes: Callable[[np.ndarray], int]) -> bool:
        """Whether the chunk whose first frames' tokens (T', H', W') are `tokens` ends after them;
        `payload_bytes`: what the entropy coder writes for a token grid (`TokWriter.payload_size`)."""
        if len(tokens) < 2:
            return False
        first = payload_bytes(tokens[:1])
        later = (payload_bytes(tokens) - first) / (len(tokens) - 1)
        return first < self.ratio * later
