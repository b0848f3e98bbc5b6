"""Entropy-coder throughput and size on synthetic LFQ-like token chunks.

    python bench/entropy_speed.py                       # 64 x 45 x 80 x 18 bits
    python bench/entropy_speed.py --data copy,motion,static,iid --repeat 5

For each synthetic chunk it prints bits per token and encode / decode
throughput (tokens per second, best of --repeat, one thread) for

  raw      model 0: bit-packed tokens (K bits per token, the anchor)
  zstd-19  zstandard level 19 on the raw bytes (only if `zstandard` imports)
  zlib-9   / lzma-9e on the raw bytes (standard library general-purpose anchors)
  ctx-m1   model 1: the context model, one binary decision per coder call
  context  model 2 (what `tokcodec encode` writes): model 1's probabilities,
           three bit planes per 8-ary coder symbol (tokcodec.bitstream.entropy)

Synthetic data (no trained tokenizer is needed):

  copy    every bit plane is the sign of a smooth random field; from one
          latent frame to the next each bit keeps its value with probability
          --keep, else it takes the value of a fresh smooth field
  motion  per-channel latents that stay put outside moving regions (plus a
          little noise) and are partly redrawn inside them (regions move
          between frames, cover ~30 %); tokens change together there
  static  one frame of `copy`, repeated
  iid     uniform random tokens (the worst case: nothing to model)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import lzma
import os
import platform
import sys
import time
import zlib

import numpy as np

from tokcodec.bitstream.entropy import EntropyParams, decode_tokens, encode_tokens


def _blur(x: np.ndarray, r: int) -> np.ndarray:
    for _ in range(2):
        for ax in (-1, -2):
            n = x.shape[ax]
            pad = [(0, 0)] * x.ndim
            pad[ax] = (r + 1, r)
            c = np.cumsum(np.pad(x, pad, mode="edge"), axis=ax)
            x = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=ax) - np.take(c, np.arange(n), axis=ax)
    return x / x.std()


def _field(rng, shape, r):
    return _blur(rng.standard_normal(shape), r)


def _pack(b: np.ndarray) -> np.ndarray:
    """(T, K, H, W) bits -> (T, H, W) tokens."""
    return (b.astype(np.int64) << np.arange(b.shape[1])[None, :, None, None]).sum(axis=1)


def gen_copy(rng, T, H, W, K, keep=0.9, r=2):
    b = np.empty((T, K, H, W), np.uint8)
    b[0] = _field(rng, (K, H, W), r) > 0
    for t in range(1, T):
        fresh = _field(rng, (K, H, W), r) > 0
        b[t] = np.where(rng.random((K, H, W)) < keep, b[t - 1], fresh)
    return _pack(b)


def gen_motion(rng, T, H, W, K, area=0.3, rho=0.5, noise=0.05, **_):
    radius = rng.integers(1, 4, K)  # channels differ in smoothness

    def fields():
        return np.stack([_field(rng, (H, W), r) for r in radius])

    z = fields()
    out = [z > 0]
    thr = np.quantile(rng.standard_normal(100_000), 1 - area)
    for _t in range(1, T):
        moving = _field(rng, (H, W), 4) > thr
        znew = rho * z + np.sqrt(1 - rho**2) * fields()
        z = np.where(moving, znew, z + noise * rng.standard_normal(z.shape))
        out.append(z > 0)
    return _pack(np.stack(out))


def gen_static(rng, T, H, W, K, **kw):
    return np.repeat(gen_copy(rng, 1, H, W, K, **kw), T, axis=0)


def gen_iid(rng, T, H, W, K, **_):
    return rng.integers(0, 1 << K, (T, H, W))


GENERATORS = {"copy": gen_copy, "motion": gen_motion, "static": gen_static, "iid": gen_iid}


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _methods(K, prior=None, frame_tokens=0):
    """(name, encode, decode) of each method; "prior" (what `tokcodec encode`
    codes with for frames of `frame_tokens` tokens: the prior's context net,
    model 3, if it has one, else the context model starting from the
    prior's counts), "prior-m1" and "prior-m2" (the counts with model 1
    and, when "prior" is the net, model 2) only when a prior is given."""
    raw, ctx, ctx1 = EntropyParams(model_id=0), EntropyParams(), EntropyParams(model_id=1)

    def via_raw(compress, decompress):
        def enc(tokens):
            return compress(encode_tokens(tokens, K, raw))

        def dec(data, shape):
            return decode_tokens(decompress(data), shape, K, raw)

        return enc, dec

    ms = [("raw", lambda t: encode_tokens(t, K, raw), lambda d, s: decode_tokens(d, s, K, raw))]
    try:
        import zstandard
    except ImportError:
        ms.append(("zstd-19", None, None))
    else:
        cctx, dctx = zstandard.ZstdCompressor(level=19), zstandard.ZstdDecompressor()
        ms.append(("zstd-19", *via_raw(cctx.compress, dctx.decompress)))
    ms.append(("zlib-9", *via_raw(lambda b: zlib.compress(b, 9), zlib.decompress)))
    ms.append(("lzma-9e", *via_raw(lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress)))
    ms.append(("ctx-m1", lambda t: encode_tokens(t, K, ctx1), lambda d, s: decode_tokens(d, s, K, ctx1)))
    ms.append(("context", lambda t: encode_tokens(t, K, ctx), lambda d, s: decode_tokens(d, s, K, ctx)))
    if prior is not None:
        pp = EntropyParams.for_encoding(prior, frame_tokens)  # as `tokcodec encode` codes
        p1 = dataclasses.replace(pp, model_id=1)
        ms.append(("prior-m1", lambda t: encode_tokens(t, K, p1, prior),
                   lambda d, s: decode_tokens(d, s, K, p1, prior)))
        if pp.model_id == 3:  # the prior's context net; its counts with model 2 as well
            p2 = EntropyParams.for_encoding(prior, frame_tokens, net=False)
            ms.append(("prior-m2", lambda t: encode_tokens(t, K, p2, prior),
                       lambda d, s: decode_tokens(d, s, K, p2, prior)))
        ms.append(("prior", lambda t: encode_tokens(t, K, pp, prior), lambda d, s: decode_tokens(d, s, K, pp, prior)))
    return ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=64, help="latent frames T per chunk")
    ap.add_argument("--height", type=int, default=45, help="tokens per column H")
    ap.add_argument("--width", type=int, default=80, help="tokens per row W")
    ap.add_argument("--bits", type=int, default=18, help="bits per token K")
    ap.add_argument("--keep", type=float, default=0.9, help="copy: probability a bit keeps its value")
    ap.add_argument("--data", default="copy,motion,static,iid", help="comma list of: " + ",".join(GENERATORS))
    ap.add_argument("--repeat", type=int, default=3, help="timing: best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    kinds = [k.strip() for k in args.data.split(",") if k.strip()]
    bad = [k for k in kinds if k not in GENERATORS]
    if bad:
        print(f"error: unknown --data {','.join(bad)} (choose from {','.join(GENERATORS)})", file=sys.stderr)
        return 2
    if not 1 <= args.bits <= 30 or min(args.frames, args.height, args.width, args.repeat) < 1:
        print("error: need 1 <= --bits <= 30 and positive sizes", file=sys.stderr)
        return 2

    from importlib.metadata import version

    T, H, W, K = args.frames, args.height, args.width, args.bits
    print(f"# {datetime.date.today()}  {platform.node()}  {platform.processor() or platform.machine()}"
          f"  cpus={os.cpu_count()}  python {platform.python_version()}  numpy {np.__version__}"
          f"  constriction {version('constriction')}")
    print(f"# chunk {T} x {H} x {W} tokens of {K} bits ({T * H * W} tokens), best of {args.repeat}")
    print(f"{'data':8} {'method':8} {'bits/token':>10} {'vs raw':>7} {'enc Mtok/s':>11} {'dec Mtok/s':>11}")
    for kind in kinds:
        tokens = GENERATORS[kind](np.random.default_rng(args.seed), T, H, W, K, keep=args.keep)
        for name, enc, dec in _methods(K):
            if enc is None:
                print(f"{kind:8} {name:8} {'(module not installed: skipped)':>42}")
                continue
            te, data = _best(lambda: enc(tokens), args.repeat)
            td, out = _best(lambda: dec(data, tokens.shape), args.repeat)
            if not np.array_equal(out, tokens):
                print(f"error: {name} did not round-trip on {kind}", file=sys.stderr)
                return 1
            bpt = 8 * len(data) / tokens.size
            print(f"{kind:8} {name:8} {bpt:10.3f} {bpt / K:7.3f} {tokens.size / te / 1e6:11.3f} "
                  f"{tokens.size / td / 1e6:11.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
