"""Experiment (not part of the codec): how the chunk length trades bits for random access.

Run: .venv/bin/python bench/experiments/chunk_length.py CLIP... [--frames 129] [--chunks 33,65,65/33]
        [--split-ratio 1.35] [--scene-cuts on] [--qualities 4] [--hysteresis auto] [--work DIR] [--reuse]

Each chunk starts with a latent frame coded alone (an intra frame): longer chunks send fewer of
them, at the cost of coarser random access and of a decoder run further from its chunk's start
than it was trained. Each clip's first FRAMES frames (written losslessly, so that every run reads
the same frames) are encoded by `encode_file` with today's defaults at each chunk length, and
decoded losslessly (a length L/S: chunks of up to L frames that end after S where the picture
moves, `encode_file(split=ChunkSplit(S, --split-ratio))`, today's default being 65/33; a plain
length: `split=None`, fixed chunks); with `--scene-cuts on,off`, each length with and without chunks that end
at scene cuts (`encode_file(scene_cuts=...)`; on, today's default, codes the same bytes as off
where the clip has no cut; `--reuse`: a .tok and its decode already in WORK are scored again, not
coded again). Prints per clip and length (and setting): bpp (the whole .tok), PSNR-Y / MS-SSIM / VMAF /
VMAF NEG (bench/metrics, Y' by BT.601 from the RGB frames), PSNR-Y over each 32-frame window
after the first frame (how the quality holds far from a chunk's start), the share of the token
bytes that each chunk's first latent frame takes (coded alone, the same context net), and the
encode and decode seconds; with several QUALITIES, each variant's BD-rate against the first's by
PSNR-Y, MS-SSIM, VMAF and VMAF NEG (`metrics.bd_rate`). (Until the forty-seventh session this script compared 17, 33 and 65
on carphone and realshort with the fourth session's codec; RESULTS "Chunk length".)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import metrics  # noqa: E402
from rd import resolve_clips  # noqa: E402

from tokcodec.bitstream.entropy import encode_tokens  # noqa: E402
from tokcodec.codec.io import iter_frames, write_video  # noqa: E402
from tokcodec.files import decode_file, encode_file, open_tok, tok_info  # noqa: E402
from tokcodec.streaming.chunk_split import DEFAULT_SPLIT_RATIO, ChunkSplit  # noqa: E402


def first_frame_share(path: Path) -> float:
    """The share of the file's token bytes that its chunks' first latent frames take, each coded
    alone again by the file's writer model (an estimate: the chunks code them with the rest)."""
    with open_tok(path) as reader:
        total = first = 0
        for e in reader.entries:
            chunk = reader.read_chunk(e.index)
            h = reader.header
            total += len(encode_tokens(chunk.tokens, h.bits, h.entropy, reader.prior))
            first += len(encode_tokens(chunk.tokens[:1], h.bits, h.entropy, reader.prior))
    return first / total


def chunk_lengths(path: Path) -> list[int]:
    with open_tok(path) as reader:
        return [e.frames for e in reader.entries]


def label(chunk: str, cuts: bool) -> str:
    return f"chunk {chunk}" + (" cut at scenes" if cuts else " (no scene cuts)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--frames", type=int, default=129)
    p.add_argument("--chunks", default="33,65,129",
                   help="chunk lengths, comma-separated; L/S: chunks of up to L frames that end after S where "
                        "the picture moves (encode_file(split=ChunkSplit(S, --split-ratio)))")
    p.add_argument("--split-ratio", type=float, default=DEFAULT_SPLIT_RATIO)
    p.add_argument("--scene-cuts", default="on", help="on, off or both in order, comma-separated")
    p.add_argument("--qualities", default="4", help="ladder points, comma-separated")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--reuse", action="store_true", help="score the files an earlier run left in WORK again")
    p.add_argument("--hysteresis", default="auto", help="encode_file's hysteresis: auto (the default) or a threshold")
    a = p.parse_args()
    hysteresis = a.hysteresis if a.hysteresis.startswith("auto") else float(a.hysteresis)
    suffix = "" if a.hysteresis == "auto" else f"-h{a.hysteresis}"
    work = a.work or Path(tempfile.mkdtemp(prefix="chunk-length-"))
    work.mkdir(parents=True, exist_ok=True)
    vmaf, neg = metrics.Vmaf(), metrics.Vmaf(neg=True)
    variants = list(itertools.product(a.chunks.split(","),
                                      (c == "on" for c in a.scene_cuts.split(","))))  # (chunk length, cuts)
    qualities = [int(q) for q in a.qualities.split(",")]
    for path in resolve_clips(a.clips):
        src = np.stack(list(itertools.islice(iter_frames(path), a.frames)))
        n, h, w = src.shape[:3]
        lossless = work / f"{path.stem}-{n}.mp4"
        if not lossless.exists():
            write_video(lossless, src, 25, lossless=True)
        y0 = metrics.rgb_to_y(src)
        curves = {v: [] for v in variants}  # (bpp, PSNR-Y, MS-SSIM, VMAF, NEG) per quality
        for quality, (chunk, cuts) in itertools.product(qualities, variants):
            name = f"{path.stem}-{n}-q{quality}-c{chunk.replace('/', 's')}{'' if cuts else '-nocuts'}{suffix}"
            tok, out = work / f"{name}.tok", work / f"{name}.mp4"
            if a.reuse and tok.exists() and out.exists():
                info = tok_info(tok)
                size, timing = info["bytes"], "reused"
            else:
                start = time.perf_counter()
                longest, _, short = chunk.partition("/")
                split = ChunkSplit(int(short), a.split_ratio) if short else None
                report = encode_file(lossless, tok, quality=quality, chunk_frames=int(longest), scene_cuts=cuts,
                                     hysteresis=hysteresis, split=split, force=True)
                enc = time.perf_counter() - start
                start = time.perf_counter()
                decode_file(tok, out, lossless=True, force=True)
                size = report.bytes
                timing = f"encode {enc:.1f} s decode {time.perf_counter() - start:.1f} s"
            y1 = metrics.rgb_to_y(np.stack(list(iter_frames(out))))
            point = (8 * size / (n * h * w), *metrics.luma_scores(y0, y1, vmaf, neg))
            curves[chunk, cuts].append(point)
            windows = metrics.window_psnr_y(y0, y1)
            print(f"{path.name} ({n} frames {w}x{h}) quality {quality} {label(chunk, cuts)} "
                  f"(chunks of {'+'.join(map(str, chunk_lengths(tok)))} frames): {point[0]:.5f} bpp, "
                  f"PSNR-Y {point[1]:.3f} MS-SSIM {point[2]:.4f} VMAF {point[3]:.2f} NEG {point[4]:.2f}; windows "
                  + " ".join(f"{v:.2f}" for v in windows)
                  + f"; first latent frames {100 * first_frame_share(tok):.1f}% of token bytes; {timing}", flush=True)
        if len(qualities) > 1:
            base = np.array(curves[variants[0]])
            for v in variants[1:]:
                c = np.array(curves[v])
                bd = [metrics.bd_rate(base[:, 0], base[:, m], c[:, 0], c[:, m]) for m in range(1, 5)]
                print(f"{path.name}: {label(*v)} against {label(*variants[0])}, "
                      "BD-rate PSNR-Y / MS-SSIM / VMAF / NEG: "
                      + " / ".join(f"{v:+.1f}%" for v in bd), flush=True)


if __name__ == "__main__":
    main()
