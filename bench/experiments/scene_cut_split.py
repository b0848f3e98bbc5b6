"""Experiment (not part of the codec): what chunks that end at scene cuts would gain, by proxy.

Run: .venv/bin/python bench/experiments/scene_cut_split.py CLIP [--frames 129] [--cuts 76]
        [--qualities 3,4] [--work DIR]

Until .tok 1.10 a file's chunks all had `--chunk-frames` frames but the last, so a scene cut inside
a chunk was coded from the old scene's causal context until the next chunk started (`encode` now
ends a chunk at a cut: `chunk_length.py --scene-cuts on,off` measures the real thing). The proxy: the clip's
first FRAMES frames coded as separate files split at CUTS (each with the default 33-frame chunks,
so each part starts with a frame coded alone), decoded and joined, against the whole as one file.
Prints per quality bpp (all parts' bytes, headers included), PSNR-Y / MS-SSIM / VMAF / VMAF NEG
and PSNR-Y per 32-frame window of both, then the split's BD-rate against the whole
(bench/metrics, Y' by BT.601). Also prints the largest mean absolute differences between
consecutive frames, where cuts show. Result in bench/RESULTS.md ("Chunk length again").
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from rd import resolve_clips  # noqa: E402

from tokcodec.codec.io import iter_frames, write_video  # noqa: E402
from tokcodec.files import decode_file, encode_file  # noqa: E402


def coded(parts: list[np.ndarray], stem: Path, quality: int) -> tuple[int, np.ndarray]:
    """Total bytes of `parts` each encoded as its own file, and their decoded frames joined."""
    total, out = 0, []
    for i, frames in enumerate(parts):
        src, tok, dec = (stem.with_name(f"{stem.name}-{i}{suffix}") for suffix in (".mp4", f"-q{quality}.tok",
                                                                                    f"-q{quality}.mp4"))
        if not src.exists():
            write_video(src, frames, 25, lossless=True)
        total += encode_file(src, tok, quality=quality, force=True).bytes
        decode_file(tok, dec, lossless=True, force=True)
        out.append(np.stack(list(iter_frames(dec))))
    return total, np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip")
    p.add_argument("--frames", type=int, default=129)
    p.add_argument("--cuts", default="76", help="first frames of the parts after the first, comma-separated")
    p.add_argument("--qualities", default="3,4")
    p.add_argument("--work", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="scene-cut-"))
    work.mkdir(parents=True, exist_ok=True)
    (path,) = resolve_clips([a.clip])
    src = np.stack(list(itertools.islice(iter_frames(path), a.frames)))
    n, h, w = src.shape[:3]
    diff = np.abs(np.diff(src.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    top = np.argsort(diff)[::-1][:4]
    print(f"{path.name}: frame differences median {np.median(diff):.1f}, largest "
          + ", ".join(f"{diff[i]:.1f} at frame {i + 1}" for i in top))
    bounds = [0, *(int(c) for c in a.cuts.split(",")), n]
    y0 = metrics.rgb_to_y(src)
    vmaf, neg = metrics.Vmaf(), metrics.Vmaf(neg=True)
    curves: dict[str, list[tuple[float, ...]]] = {"whole": [], "split": []}
    for quality in (int(q) for q in a.qualities.split(",")):
        for name, parts in (("whole", [src]), ("split", [src[a_:b_] for a_, b_ in zip(bounds, bounds[1:])])):
            size, out = coded(parts, work / f"{path.stem}-{n}-{name}", quality)
            y1 = metrics.rgb_to_y(out)
            point = (8 * size / (n * h * w), *metrics.luma_scores(y0, y1, vmaf, neg))
            curves[name].append(point)
            windows = metrics.window_psnr_y(y0, y1)
            print(f"quality {quality} {name}: {point[0]:.5f} bpp, PSNR-Y {point[1]:.3f} MS-SSIM {point[2]:.4f} "
                  f"VMAF {point[3]:.2f} NEG {point[4]:.2f}; windows " + " ".join(f"{v:.2f}" for v in windows),
                  flush=True)
    if len(curves["whole"]) > 1:
        base, test = np.array(curves["whole"]), np.array(curves["split"])
        bd = [metrics.bd_rate(base[:, 0], base[:, m], test[:, 0], test[:, m]) for m in range(1, 5)]
        print("split against whole, BD-rate PSNR-Y / MS-SSIM / VMAF / NEG: " + " / ".join(f"{v:+.1f}%" for v in bd))


if __name__ == "__main__":
    main()
