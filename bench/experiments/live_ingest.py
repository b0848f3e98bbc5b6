"""Experiment: what `serve`'s live ingest codes: the files' unsharp mask on it, its scale, its layers.

Run: .venv/bin/python bench/experiments/live_ingest.py CLIP... [--qualities 2,3,4,5]
        [--amounts 0.25,0.5,0.75,1] [--frames 33] [--max-side 256] [--max-scale 1] [--layers]
        [--chunk-frames 33] [--chunk-split 0] [--no-scene-cuts] [--work DIR]

Live ingest (`streaming.server.Ingest`) codes camera frames scaled to at most MAX_SIDE pixels
on their long side, at the ladder's point for that size with its scale capped at MAX_SCALE
(`Ladder.for_frame(max_scale=...)`; at 1 an upscaling point takes more bits per token
instead), with the stateful encoder's fixed hysteresis and no refinement; `encode_file` with
those settings gives the same tokens. Without `--layers` no coarse layers (as the ingest was
before the forty-sixth session), with it each chunk's layers chosen on its decoded frames, as
the ingest and files choose them. `--chunk-split S`: chunks of up to CHUNK_FRAMES frames that end
after S where the picture moves (`encode_file(split=ChunkSplit(S))`, files' rule; 0: fixed chunks). Each clip's first FRAMES frames, scaled so, are coded at each
QUALITY and decoded with the default mask's sigma and threshold at each amount
(`decode_file(sharpen=a)`) and with none. Prints per clip and point the bpp and PSNR-Y /
MS-SSIM / VMAF / VMAF NEG with no mask, and each amount's change; then the means over clips
and points (bench/metrics, Y' by BT.601 from the RGB frames).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from rd import resolve_clips  # noqa: E402

from tokcodec.codec import load_tokenizer  # noqa: E402
from tokcodec.codec.io import iter_frames, write_video  # noqa: E402
from tokcodec.files import decode_file, encode_file  # noqa: E402
from tokcodec.ladder import model_ladder  # noqa: E402
from tokcodec.streaming.chunk_split import ChunkSplit  # noqa: E402
from tokcodec.streaming.refine import RefineConfig  # noqa: E402
from tokcodec.streaming.stateful import DEFAULT_HYSTERESIS  # noqa: E402


def live_frames(path: Path, frames: int, max_side: int) -> np.ndarray:
    """The clip's first frames scaled as `Ingest._scale` scales a camera frame."""
    out = []
    for rgb in itertools.islice(iter_frames(path), frames):
        h, w = rgb.shape[:2]
        s = min(1.0, max_side / max(w, h))
        w2, h2 = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)
        out.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").to_ndarray(format="rgb24", width=w2, height=h2))
    return np.stack(out)


def scores(ref: np.ndarray, dist: np.ndarray, vmaf: metrics.Vmaf, neg: metrics.Vmaf) -> np.ndarray:
    """PSNR-Y, MS-SSIM, VMAF, VMAF NEG of two uint8 RGB videos."""
    return metrics.luma_scores(metrics.rgb_to_y(ref), metrics.rgb_to_y(dist), vmaf, neg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--qualities", default="2,3,4,5")
    p.add_argument("--amounts", default="0.25,0.5,0.75,1")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--max-side", type=int, default=256)
    p.add_argument("--max-scale", type=float, default=1.0)
    p.add_argument("--layers", action="store_true", help="with the coarse luma and chroma layers (files' default)")
    p.add_argument("--chunk-frames", type=int, default=33,
                   help="frames per chunk (the ingest's `IngestConfig.chunk_frames`; 33 until this option came)")
    p.add_argument("--chunk-split", type=int, default=0,
                   help="chunks end after this many frames where the picture moves (0: fixed chunks)")
    p.add_argument("--no-scene-cuts", dest="scene_cuts", action="store_false",
                   help="fixed-length chunks (the ingest's `IngestConfig.scene_cuts` off; before the forty-eighth session)")
    p.add_argument("--work", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="live-sharpen-"))
    work.mkdir(parents=True, exist_ok=True)
    amounts = [float(v) for v in a.amounts.split(",")]
    ladder = model_ladder(load_tokenizer().config)
    vmaf, neg = metrics.Vmaf(), metrics.Vmaf(neg=True)
    changes = {amount: [] for amount in amounts}
    for path in resolve_clips(a.clips):
        src = live_frames(path, a.frames, a.max_side)
        n, h, w = src.shape[:3]
        lossless = work / f"{path.stem}-live.mp4"
        write_video(lossless, src, 25, lossless=True)
        for q in (int(v) for v in a.qualities.split(",")):
            point = ladder.for_frame(q, w, h, max_scale=a.max_scale)
            tok = work / (f"{path.stem}-q{q}-x{point.scale:g}{'-layers' if a.layers else ''}-c{a.chunk_frames}{f's{a.chunk_split}' if a.chunk_split else ''}"
                          f"{'' if a.scene_cuts else '-nocuts'}.tok")
            encode_file(lossless, tok, quality=q, scale=point.scale, level=point.level, hysteresis=DEFAULT_HYSTERESIS,
                        chunk_frames=a.chunk_frames, scene_cuts=a.scene_cuts,
                        split=ChunkSplit(a.chunk_split) if a.chunk_split else None,
                        refine=RefineConfig(), luma_layer=a.layers, chroma_layer=a.layers, sharpen=0, force=True)
            bpp = tok.stat().st_size * 8 / (n * w * h)
            base = None
            line = []
            for amount in [0.0, *amounts]:
                out = work / f"{tok.stem}-a{amount:g}.mp4"
                decode_file(tok, out, lossless=True, sharpen=amount, force=True)
                s = scores(src, np.stack(list(iter_frames(out))), vmaf, neg)
                if base is None:
                    base = s
                    line.append(f"{s[0]:.2f} / {s[1]:.4f} / {s[2]:.1f} / {s[3]:.1f}")
                else:
                    changes[amount].append(s - base)
                    d = s - base
                    line.append(f"a={amount:g}: {d[0]:+.3f} / {d[1]:+.4f} / {d[2]:+.2f} / {d[3]:+.2f}")
            print(f"{path.name} {w}x{h} q{q} (level {point.level}, {point.scale:g}x) {bpp:.4f} bpp: " + "; ".join(line), flush=True)
    for amount, ds in changes.items():
        m = np.mean(ds, axis=0)
        print(f"mean a={amount:g}: PSNR-Y {m[0]:+.3f} dB, MS-SSIM {m[1]:+.4f}, VMAF {m[2]:+.2f}, NEG {m[3]:+.2f}")


if __name__ == "__main__":
    main()
