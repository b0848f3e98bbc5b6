"""Experiment (not part of the codec): how the chunk length trades bits for random access.

Run: .venv/bin/python bench/experiments/chunk_length.py (needs the corpus). Encodes the first 65 frames
of carphone and realshort (36 frames) with `encode_file(chunk_frames=17 / 33 / 65)` at levels 1-3,
decodes losslessly and prints bpp (whole .tok) and PSNR-Y (mean per frame, Y' of the decoded RGB
source and output, bt601 limited range). Result in bench/RESULTS.md ("Chunk length")."""

import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import metrics  # noqa: E402
from corpus import corpus_dir  # noqa: E402

from tokcodec.codec.io import iter_frames  # noqa: E402
from tokcodec.files import decode_file, encode_file  # noqa: E402

FRAMES = 65
for name in ("carphone_pristine.mp4", "realshort.mp4"):
    path = corpus_dir() / name
    src = np.stack(list(itertools.islice(iter_frames(path), FRAMES)))
    n, h, w = src.shape[:3]
    for quality in (1, 2, 3):
        row = []
        for chunk in (17, 33, 65):
            with tempfile.TemporaryDirectory() as d:
                report = encode_file(path, f"{d}/a.tok", quality=quality, chunk_frames=chunk, max_frames=FRAMES)
                decode_file(f"{d}/a.tok", f"{d}/a.mp4", lossless=True)
                out = np.stack(list(iter_frames(f"{d}/a.mp4")))
                psnr = metrics.psnr_y(metrics.rgb_to_y(src), metrics.rgb_to_y(out))
                row.append(f"chunk {chunk}: {8 * report.bytes / (n * h * w):.4f} bpp {psnr:.2f} dB")
        print(f"{name} ({n} frames) level {quality}: " + " | ".join(row), flush=True)
