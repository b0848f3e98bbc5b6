"""Bits per token and entropy-coder speed on the corpus eval clips.

    .venv/bin/python bench/entropy.py [--model NAME] [--quality 0,2,4] [--scale S] [--max-chunks N] [--hysteresis H] [--repeat 3]

Each eval clip of ../shared/corpus is tokenized as `tokcodec encode` does
(chunks of the default 33 frames, default model, the frames resampled by
--scale as `encode --scale` does, default 1; the fixed hysteresis 0.2
unless --hysteresis says otherwise) and every chunk is coded on its own
with: raw K-bit codes (the anchor), zstd -19, zlib -9 and lzma -9e on the
bit-packed tokens, the context model from uniform counts ("ctx-m1": entropy
model 1, binary decisions; "context": model 2, the same probabilities in
8-ary symbols), and the model's shipped entropy prior ("prior-m1" and
"prior-m2": the context model starting from its counts, with models 1 and
2; "prior": what `tokcodec encode` writes, the prior's context net, model
3, where the prior has one, else model 2; the prior is fitted on the train
split only).
Throughput is measured on one thread (the coder has no threads of its
own): tokens per second, best of --repeat.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import clips  # noqa: E402
from entropy_speed import _best, _methods  # noqa: E402

from tokcodec.codec import fingerprint, load_tokenizer  # noqa: E402
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS  # noqa: E402
from tokcodec.priors import model_prior, video_token_chunks  # noqa: E402
from tokcodec import DEFAULT_CHUNK_FRAMES  # noqa: E402

CACHE = Path.home() / ".cache" / "tokcodec" / "bench-tokens"


def clip_tokens(path: Path, model_name: str | None, hysteresis: float,
                chunk_frames: int = DEFAULT_CHUNK_FRAMES, scale: float = 1.0,
                max_chunks: int | None = None) -> list[np.ndarray]:
    """Token grids of every chunk (or the first `max_chunks`) of a clip, frames
    resampled by `scale`, cached per model fingerprint, hysteresis, scale and max_chunks."""
    model = load_tokenizer(model_name)
    tag = "" if hysteresis == 0 else f"-h{hysteresis:g}"  # h0: the name caches had before hysteresis
    tag += ("" if scale == 1 else f"-s{scale:g}") + ("" if max_chunks is None else f"-c{max_chunks}")
    cache = CACHE / f"{path.stem}-{model.config.name}-{fingerprint(model)}-{chunk_frames}{tag}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return [z[k] for k in sorted(z.files)]
    grids = list(video_token_chunks([path], model, chunk_frames, max_chunks, hysteresis, scale))
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f"{i:05d}": g for i, g in enumerate(grids)})
    return grids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--quality", default=None,
                    help="quality levels to measure, e.g. 0,2,4 (default: the model's default level)")
    ap.add_argument("--hysteresis", type=float, default=DEFAULT_HYSTERESIS,
                    help=f"the encoder's hysteresis threshold (default {DEFAULT_HYSTERESIS}, as tokcodec encode)")
    ap.add_argument("--scale", type=float, default=1.0, help="code the frames resampled by this factor (default 1)")
    ap.add_argument("--max-chunks", type=int, default=None, help="use the first N chunks of each clip (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    paths = clips("eval")
    if not paths:
        print("no corpus eval clips found: run ../shared/corpus/fetch.sh first", file=sys.stderr)
        return 2
    model = load_tokenizer(args.model)
    levels = ([int(q) for q in args.quality.split(",")] if args.quality
              else [model.config.lfq.default_quality])
    for q in levels:
        measure(model, args.model, q, paths, args.repeat, args.hysteresis, args.scale, args.max_chunks)
    return 0


def measure(model, model_name: str | None, quality: int, paths: list[Path], repeat: int, hysteresis: float,
            scale: float = 1.0, max_chunks: int | None = None) -> None:
    """Print the table for one quality level (its tokens: the first `bits` bits of the full tokens)."""
    k = model.level_bits(quality)
    print(f"# {datetime.date.today()}  {platform.node()}  {platform.machine()}  model {model.config.name} "
          f"({fingerprint(model)})  quality {quality}: {k}-bit tokens, scale {scale:g}, hysteresis {hysteresis:g}, "
          f"chunks of {DEFAULT_CHUNK_FRAMES} frames{'' if max_chunks is None else f' (the first {max_chunks})'}, "
          f"best of {repeat}")
    print(f"{'clip':24} {'method':8} {'tokens':>8} {'bits/token':>10} {'vs raw':>7} {'enc Mtok/s':>10} {'dec Mtok/s':>10}")
    totals: dict[str, list[float]] = {}
    for path in paths:
        grids = [g & ((1 << k) - 1) for g in clip_tokens(path, model_name, hysteresis, scale=scale, max_chunks=max_chunks)]
        n = sum(g.size for g in grids)
        for name, enc, dec in _methods(k, model_prior(model, k), grids[0].shape[1] * grids[0].shape[2]):
            if enc is None:
                continue
            te, blobs = _best(lambda: [enc(g) for g in grids], repeat)
            td, outs = _best(lambda: [dec(b, g.shape) for b, g in zip(blobs, grids)], repeat)
            assert all(np.array_equal(o, g) for o, g in zip(outs, grids)), f"{name} did not round-trip"
            nbytes = sum(len(b) for b in blobs)
            bpt = 8 * nbytes / n
            t = totals.setdefault(name, [0, 0, 0.0, 0.0])
            t[0] += n; t[1] += nbytes; t[2] += te; t[3] += td
            print(f"{path.name:24} {name:8} {n:8d} {bpt:10.3f} {bpt / k:7.3f} {n / te / 1e6:10.3f} {n / td / 1e6:10.3f}",
                  flush=True)
    for name, (n, nbytes, te, td) in totals.items():
        bpt = 8 * nbytes / n
        print(f"{'ALL eval clips':24} {name:8} {n:8d} {bpt:10.3f} {bpt / k:7.3f} {n / te / 1e6:10.3f} {n / td / 1e6:10.3f}")


if __name__ == "__main__":
    sys.exit(main())
