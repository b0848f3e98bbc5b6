"""Regenerate codec/samples/sample.mp4 from the real-video corpus.

    python codec/samples/make_sample.py [CORPUS_DIR]

CORPUS_DIR defaults to ~/.cache/tokcodec/corpus (fetched by
../shared/corpus/fetch.sh). Takes 33 frames of vtest.avi (768x576, 10 fps,
pedestrians, static camera), shrinks them 3x to 256x192 by averaging 3x3
blocks, and writes H.264 at crf 18 and the source frame rate.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from tokcodec.codec.io import VideoWriter, iter_frames, probe

SOURCE = "vtest.avi"
FIRST, COUNT = 100, 33  # frames 100..132: several pedestrians crossing
FACTOR = 3  # 768x576 -> 256x192, an exact box downscale


def shrink(frame: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks (exact for sizes divisible by factor)."""
    h, w, c = frame.shape
    blocks = frame[: h - h % factor, : w - w % factor].reshape(h // factor, factor, w // factor, factor, c)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def main(corpus: Path) -> None:
    source = corpus / SOURCE
    info = probe(source)
    out = Path(__file__).resolve().parent / "sample.mp4"
    frames = itertools.islice(iter_frames(source), FIRST, FIRST + COUNT)
    with VideoWriter(out, info.fps, info.width // FACTOR, info.height // FACTOR, crf=18) as writer:
        for frame in frames:
            writer.write(shrink(frame, FACTOR))
    assert writer.frames_written == COUNT, writer.frames_written
    print(f"{out}: {COUNT} frames, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "tokcodec" / "corpus")
