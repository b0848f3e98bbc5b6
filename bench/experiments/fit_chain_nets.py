"""Fit entropy model 4's nets above 12 bits for the default model (its 18-, 24- and 30-bit levels), with a token cache.

Run: .venv/bin/python bench/experiments/fit_chain_nets.py --cache DIR --out DIR [--chunks 2]
         [--hidden 256,256] [--steps 20000] [--groups 2,3,4] [--eval VIDEO[,VIDEO...]] VIDEO...

The first CHUNKS 33-frame chunks of each VIDEO are coded with all 30 bits at 1x and at the default
point's scale (after the pixel cap), hysteresis chosen per chunk as `encode` does, unrefined
(`priors.video_token_chunks(..., scale=(1.0, None), bits=30)`), and cached as
DIR/<name>-k30-s<scale>-c<CHUNKS>.npz, so a second fit re-reads them. Levels above 12 bits are what
the pixel cap reaches on large frames (a 1080p source codes its default point as 24 bits at 1x, a
720p one its quality 6 as 24 bits at 1.5x), so the nets learn from tokens at these scales rather
than the ladder's. Group g (bits 6g .. 6g + 5) is learned given bits 0 .. 6g - 1 (`fit_context_net(...,
side_bits=6g)`), from the first 6g + 6 bits of the 30-bit tokens; the shipped 6-bit net and the
12-bit prior's top net code groups 0 and 1. OUT/ gets the prior of each level 6 (g + 1) whose groups
are all fitted (OUT/group<g>.npz: each net on its own, reused by a later run): the shipped counts of that level and the chain of nets (`tokcodec fit-prior` fits
all of it from one list of videos, from tokens coded at each level's bits; this script is how the
shipped nets of the twenty-ninth session were made, bench/RESULTS.md "Large frames' top points
coded by a chain of nets"). With --eval, each VIDEO's chunks are coded the same way and the token
payload bytes of each level are printed under the shipped prior and under the new one.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from tokcodec.bitstream.context_net import ContextNet
from tokcodec.bitstream.entropy import EntropyParams, EntropyPrior, encode_tokens
from tokcodec.codec import load_tokenizer
from tokcodec.context_net_fit import ContextNetConfig, fit_context_net
from tokcodec.priors import load_prior, video_token_chunks
from tokcodec.streaming.rate_control import HysteresisSearch

MODEL, BITS, GROUP = "magvit2-4x8x8-k30", 30, 6
SCALES = (1.0, None)  # 1x and the default point's scale


def cached_chunks(cache: Path, chunks: int, videos: list[str]) -> list[np.ndarray]:
    """The 30-bit token chunks of each video at each of SCALES, encoded once and kept in `cache`."""
    tokenizer = None
    out = []
    for video in videos:
        for scale in SCALES:
            path = cache / f"{Path(video).name}-k{BITS}-s{scale or 'default'}-c{chunks}.npz"
            if not path.exists():
                tokenizer = tokenizer or load_tokenizer(MODEL).eval()
                start = time.time()
                grids = list(video_token_chunks([video], tokenizer, 33, chunks, HysteresisSearch(), scale, BITS))
                np.savez(path, *grids)
                print(f"{Path(video).name} at {scale or 'default'}: {[g.shape for g in grids]}, "
                      f"{time.time() - start:.0f} s", flush=True)
            data = np.load(path)
            out += [data[k] for k in data.files]
    return out


def _load_group(out: Path, g: int) -> ContextNet:
    with np.load(out / f"group{g}.npz") as z:
        return ContextNet.from_arrays(GROUP, dict(z))


def payload(grids: list[np.ndarray], bits: int, prior: EntropyPrior) -> int:
    """Token payload bytes of the chunks as `encode` codes them under `prior`."""
    mask = (1 << bits) - 1
    return sum(len(encode_tokens(g & mask, bits, EntropyParams.for_encoding(prior, g.shape[1] * g.shape[2]), prior))
               for g in grids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--groups", type=lambda s: [int(g) for g in s.split(",")], default=[2, 3, 4])
    ap.add_argument("--eval", type=lambda s: s.split(","), default=[], help="VIDEO[,VIDEO...]")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = cached_chunks(args.cache, args.chunks, args.videos)
    print(f"{len(chunks)} chunks, {sum(c.size for c in chunks)} tokens", flush=True)
    config = ContextNetConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), steps=args.steps)
    chain = list(load_prior(MODEL, 2 * GROUP).nets)  # groups 0 and 1: the shipped nets
    for g in args.groups:
        path = args.out / f"group{g}.npz"  # the net alone, so that a second run (or a parallel one) reuses it
        if not path.exists():
            start = time.time()
            mask = (1 << (GROUP * (g + 1))) - 1
            net, fit = fit_context_net([c & mask for c in chunks], GROUP, config, side_bits=GROUP * g)
            print(f"group {g} (bits {GROUP * g}..{GROUP * g + GROUP - 1}): {time.time() - start:.0f} s, "
                  f"{fit.float_bits:.3f} bits/token in float, {fit.int_bits:.3f} in integers", flush=True)
            np.savez(path, **net.arrays())
    priors = {}
    for g in range(2, BITS // GROUP):
        if all((args.out / f"group{i}.npz").exists() for i in range(2, g + 1)):
            level = GROUP * (g + 1)
            nets = chain + [_load_group(args.out, i) for i in range(2, g + 1)]
            priors[level] = EntropyPrior(level, load_prior(MODEL, level).tables, nets[0], tuple(nets[1:]))
            priors[level].save(args.out / f"{MODEL}.prior-k{level}.npz")
            print(f"{level}-bit prior {priors[level].id:08x}", flush=True)
    tokenizer = load_tokenizer(MODEL).eval() if args.eval else None
    for video in args.eval:
        shapes = set()
        for scale in SCALES:
            grids = list(video_token_chunks([video], tokenizer, 33, args.chunks, HysteresisSearch(), scale, BITS))
            shape = grids[0].shape
            if shape in shapes:  # the default point of a large frame is at 1x
                continue
            shapes.add(shape)
            for level, prior in priors.items():
                before, after = payload(grids, level, load_prior(MODEL, level)), payload(grids, level, prior)
                print(f"{Path(video).name} at {scale or 'default'} {shape}, {level} bits: {before} -> {after} bytes "
                      f"({after / before - 1:+.1%})", flush=True)


if __name__ == "__main__":
    main()
