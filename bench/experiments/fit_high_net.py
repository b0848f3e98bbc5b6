"""Fit entropy model 4's high bits' net for the default model's 12-bit level (quality 7), with a token cache.

Run: .venv/bin/python bench/experiments/fit_high_net.py --cache DIR --out PRIOR.npz [--chunks 2]
         [--hidden 256,256] [--steps 20000] [--no-side] [--eval FILE.tok[,FILE.tok...]] VIDEO...

The first CHUNKS 33-frame chunks of each VIDEO are coded as `encode --quality 7` codes them (the
point's scale after the pixel cap, hysteresis chosen per chunk, unrefined, 12 bits:
`priors.video_token_chunks(..., quality=7)`) and cached as DIR/<stem>-q7-c<CHUNKS>.npz, so a second
fit re-reads them. The net learns bits 6..11 of the tokens given bits 0..5 (`fit_context_net(...,
side_bits=6)`); the prior written is the shipped 12-bit prior's counts, the shipped 6-bit net for the
low bits and the new net (`tokcodec fit-prior` fits all of it from one list of videos; this script is
how the shipped net of the twenty-eighth session was made, bench/RESULTS.md "Quality 7 coded by two
context nets"). With --eval, the token payload bytes of each .tok file's chunks are printed under
the shipped 12-bit prior (as the file says) and under the new one. --no-side fits the same net
without the low bits as inputs and prints what the 6-bit net plus it would spend (nothing is saved).
"""

import argparse
import time
from pathlib import Path

import numpy as np

import tokcodec
from tokcodec.bitstream.entropy import EntropyParams, EntropyPrior, encode_tokens
from tokcodec.codec import load_tokenizer
from tokcodec.context_net_fit import ContextNetConfig, fit_context_net
from tokcodec.priors import load_prior, video_token_chunks
from tokcodec.streaming.rate_control import HysteresisSearch

MODEL, QUALITY, BITS, LOW = "magvit2-4x8x8-k30", 7, 12, 6


def cached_chunks(cache: Path, chunks: int, videos: list[str]) -> list[np.ndarray]:
    """The 12-bit token chunks of each video at quality 7, encoded once and kept in `cache`."""
    tokenizer = None
    out = []
    for video in videos:
        path = cache / f"{Path(video).stem}-q{QUALITY}-c{chunks}.npz"
        if not path.exists():
            tokenizer = tokenizer or load_tokenizer(MODEL).eval()
            start = time.time()
            grids = list(video_token_chunks([video], tokenizer, 33, chunks, HysteresisSearch(), None, BITS, QUALITY))
            np.savez(path, *grids)
            print(f"{Path(video).name}: {len(grids)} chunks of {grids[0].shape}, {time.time() - start:.0f} s", flush=True)
        data = np.load(path)
        out += [data[k] for k in data.files]
    return out


def payload(grids: list[np.ndarray], bits: int, prior: EntropyPrior) -> int:
    """Token payload bytes of the chunks as `encode` codes them under `prior`."""
    return sum(len(encode_tokens(g, bits, EntropyParams.for_encoding(prior, g.shape[1] * g.shape[2]), prior))
               for g in grids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--no-side", action="store_true")
    ap.add_argument("--eval", type=lambda s: s.split(","), default=[], help="FILE.tok[,FILE.tok...]")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    chunks = cached_chunks(args.cache, args.chunks, args.videos)
    print(f"{len(chunks)} chunks, {sum(c.size for c in chunks)} tokens", flush=True)
    config = ContextNetConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), steps=args.steps)
    low, shipped = load_prior(MODEL, LOW), load_prior(MODEL, BITS)
    start = time.time()
    if args.no_side:
        net, fit = fit_context_net([c >> LOW for c in chunks], BITS - LOW, config)
        high = EntropyPrior(BITS - LOW, low.tables, net)  # the high bits on their own, as model 3 codes them
    else:
        net, fit = fit_context_net(chunks, BITS - LOW, config, side_bits=LOW)
        prior = EntropyPrior(BITS, shipped.tables, low.net, (net,))
        prior.save(args.out)
    print(f"fitted in {time.time() - start:.0f} s: {fit.float_bits:.3f} bits/token in float, "
          f"{fit.int_bits:.3f} in integers" + ("" if args.no_side else f"; prior {prior.id:08x} -> {args.out}"))
    for tok in args.eval:
        grids = [c.tokens for c in tokcodec.read_tokens(tok)]
        before = payload(grids, BITS, shipped)
        low_bytes = payload([g & (2 ** LOW - 1) for g in grids], LOW, low)
        if args.no_side:
            after = low_bytes + payload([g >> LOW for g in grids], BITS - LOW, high)
        else:
            after = payload(grids, BITS, prior)
        print(f"{Path(tok).name}: {before} -> {after} bytes ({after / before - 1:+.1%}); low 6 bits by the 6-bit net "
              f"{low_bytes}", flush=True)


if __name__ == "__main__":
    main()
