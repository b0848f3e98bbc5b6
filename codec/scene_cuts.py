"""Scene cuts: frames where the picture changes all at once.

A chunk of a .tok file is coded from its own first frame onwards, so a cut
inside a chunk leaves the rest of it coded from the old scene's context. The
encoder ends a chunk early at a cut, as x264 places an I-frame there (on
bikes.mp4 32.6% fewer bits at equal PSNR-Y: bench/RESULTS.md, "Chunks that
end at scene cuts").

The decision is FFmpeg's scdet filter, run through PyAV on the RGB frames
the encoder reads: the mean absolute difference of a frame from the one
before (mafd, in percent of full scale), less its change from the last
frame's (so steady motion or a fade does not count), is the score; a cut is
a score of `threshold` or more (10, scdet's default).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

SCENE_THRESHOLD = 10.0  # scdet's default: percent of full-scale mean frame difference


class SceneCuts:
    """Feed every frame of a video in order; `is_cut(frame)` says whether it starts a new scene.

    Frames are uint8 RGB (H, W, 3). The first frame is never a cut, nor is a
    frame of another size than the one before (a camera that changes its
    resolution): the detector starts again from it.
    """

    def __init__(self, threshold: float = SCENE_THRESHOLD) -> None:
        if not 0 < threshold <= 100:
            raise ValueError(f"scene cut threshold must be in (0, 100], got {threshold}")
        self.threshold = threshold
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, ...] = ()
        self._pts = 0

    def _open(self, width: int, height: int) -> av.filter.Graph:
        graph = av.filter.Graph()
        src = graph.add_buffer(width=width, height=height, format="rgb24", time_base=Fraction(1, 25))
        scdet = graph.add("scdet", f"threshold={self.threshold}")
        sink = graph.add("buffersink")
        src.link_to(scdet)
        scdet.link_to(sink)
        graph.configure()
        return graph

    def score(self, frame: np.ndarray) -> float:
        """scdet's score of `frame` against the frame fed before it (0..100; 0 for the first)."""
        if frame.shape != self._shape:
            self._graph, self._shape = self._open(frame.shape[1], frame.shape[0]), frame.shape
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        f.pts = self._pts
        self._pts += 1
        self._graph.push(f)
        return float(self._graph.pull().metadata.get("lavfi.scd.score", 0.0))

    def is_cut(self, frame: np.ndarray) -> bool:
        """Whether `frame` starts a new scene (its score reaches the threshold)."""
        return self.score(frame) >= self.threshold
