"""Experiment: can a conventional residual layer lift tokcodec past its ladder's top?

Run: .venv/bin/python bench/experiments/residual_layer.py CLIP [--qualities 4,6] [--crfs 38,34,30]
        [--frames 33] [--work DIR]

Each quality of the clip's first FRAMES frames is coded by `tokcodec encode` with its defaults and
decoded (as bench/rd.py does: `run_tokcodec`). The luma error left, 128 + (source Y' - decoded Y')
clipped to 0..255, is coded as a grey video by libx264 (preset medium) at each CRF and added back
to the decoded Y'. Prints, per point: bpp (the .tok and the residual's mp4 together, bits per
pixel per frame) and PSNR-Y (bench/metrics, as bench/rd.py measures them); and libx264 alone at
the same CRFs on the source, for comparison. The chroma is left as tokcodec decodes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from rd import ANCHORS, decode_luma, encode_anchor, load_source, resolve_clips, run_anchor, run_tokcodec  # noqa: E402


def grey_yuv420(y: np.ndarray) -> np.ndarray:
    """A yuv420p frame (H * 3/2, W) with luma `y` and neutral chroma."""
    h, w = y.shape
    return np.concatenate([y, np.full((h // 2, w), 128, np.uint8)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip")
    p.add_argument("--qualities", default="4,6")
    p.add_argument("--crfs", default="38,34,30")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--work", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="residual-"))
    work.mkdir(parents=True, exist_ok=True)
    src = load_source(resolve_clips([a.clip])[0], a.frames)
    pixels = src.frames * src.width * src.height
    x264 = ANCHORS["x264"]
    crfs = [int(c) for c in a.crfs.split(",")]
    for crf in crfs:
        m = run_anchor(src, x264, crf, x264.preset, work)
        print(f"{src.path.name} x264 CRF {crf}: {m.bytes * 8 / pixels:.4f} bpp, PSNR-Y {metrics.psnr_y(src.y, m.y):.2f}")
    for q in (int(v) for v in a.qualities.split(",")):
        tok = run_tokcodec(src, q, None, work)
        print(f"{src.path.name} tokcodec q{q}: {tok.bytes * 8 / pixels:.4f} bpp, PSNR-Y {metrics.psnr_y(src.y, tok.y):.2f}")
        residual = np.clip(128 + src.y.astype(np.int16) - tok.y, 0, 255).astype(np.uint8)
        grey = dataclasses.replace(src, yuv=[grey_yuv420(r) for r in residual])
        for crf in crfs:
            path = work / f"{src.path.stem}-q{q}-residual-crf{crf}.mp4"
            encode_anchor(grey, x264, crf, x264.preset, path)
            coded, _, _ = decode_luma(path, src.matrix, src.full_range)
            y = np.clip(tok.y.astype(np.int16) + coded - 128, 0, 255).astype(np.uint8)
            bpp = (tok.bytes + path.stat().st_size) * 8 / pixels
            print(f"{src.path.name} tokcodec q{q} + residual CRF {crf}: {bpp:.4f} bpp, PSNR-Y {metrics.psnr_y(src.y, y):.2f}")


if __name__ == "__main__":
    main()
