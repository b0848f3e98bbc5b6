"""Fit the 6-bit context net (entropy model 3) on many videos at several coding scales, with a token cache.

Run: .venv/bin/python bench/experiments/fit_net.py --cache DIR --out PRIOR.npz
         [--hidden 256,256] [--steps 20000] [--eval EVAL_DIR] SCALE:CHUNKS:VIDEO[,VIDEO...] ...

Each SCALE:CHUNKS:VIDEOS group adds the 6-bit tokens of the first CHUNKS 33-frame chunks of each
video coded at SCALE ("default": the scale the default quality picks for the video) as
`priors.video_token_chunks` codes them: hysteresis chosen per chunk as `encode` does, unrefined.
A SCALE of qN instead takes the tokens `encode --quality N` writes (`files.encode_file` with every
default, so refined where `encode` refines). Token chunks are cached in DIR as
<video stem>-s<SCALE>-c<CHUNKS>.npz, so a second fit with another net size re-reads them instead
of encoding again. The net (`context_net_fit.fit_context_net`) is saved with the shipped
6-bit prior's counts as PRIOR.npz (`tokcodec fit-prior` fits counts and net together from one
list of videos at one scale; this script is how the shipped net of the twenty-fifth session was
made, bench/RESULTS.md "A wider context net"). With --eval, the ideal bits/token of the shipped
and the new net are printed for each .npz of EVAL_DIR (cached chunks or `tokcodec tokens` exports of 6-bit tokens).
"""

import argparse
import glob
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokcodec.bitstream.container import Header
from tokcodec.bitstream.entropy import EntropyPrior
from tokcodec.codec import load_tokenizer
from tokcodec.context_net_fit import ContextNetConfig, chunk_examples, fit_context_net, int_bits
from tokcodec.files import encode_file
from tokcodec.priors import load_prior, video_token_chunks
from tokcodec.streaming.rate_control import HysteresisSearch
from tokcodec.token_archive import export_tokens

MODEL, BITS = "magvit2-4x8x8-k30", 6


def cached_chunks(cache: Path, scale: str, chunks: int, videos: list[str]) -> list[np.ndarray]:
    """The token chunks of each video at `scale`, encoded once and kept in `cache`."""
    tokenizer = None
    out = []
    for video in videos:
        path = cache / f"{Path(video).stem}-s{scale}-c{chunks}.npz"
        if not path.exists():
            tokenizer = tokenizer or load_tokenizer(MODEL).eval()
            start = time.time()
            grids = list(video_token_chunks([video], tokenizer, 33, chunks, HysteresisSearch(),
                                            None if scale == "default" else float(scale), BITS))
            np.savez(path, *grids)
            print(f"{Path(video).name} at {scale}: {len(grids)} chunks of {grids[0].shape}, "
                  f"{time.time() - start:.0f} s", flush=True)
        data = np.load(path)
        out += [data[k] for k in data.files]
    return out


def encoded_chunks(cache: Path, quality: int, chunks: int, videos: list[str]) -> list[np.ndarray]:
    """The token chunks `encode --quality` writes for the first `chunks` chunks of each video, encoded once
    and kept in `cache` as the `tokcodec tokens` export of the file."""
    out = []
    for video in videos:
        path = cache / f"{Path(video).stem}-sq{quality}-c{chunks}.npz"
        if not path.exists():
            start = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                tok = Path(tmp) / "tokens.tok"
                report = encode_file(video, tok, quality=quality, max_frames=33 * chunks)
                export_tokens(tok, path)
            print(f"{Path(video).name} at quality {quality}: {report.bytes} bytes, refined by {report.refine_steps} "
                  f"steps, {time.time() - start:.0f} s", flush=True)
        out += archive_chunks(path)
    return out


def archive_chunks(path: Path) -> list[np.ndarray]:
    """The token chunks of a `tokcodec tokens` export (the last chunk without its zero-filled latent frames)."""
    data = np.load(path)
    if "tokens" not in data.files:  # a cache file of cached_chunks
        return [data[k] for k in data.files]
    header = Header.from_json(json.loads(str(data["meta"])))
    return [grid[: header.chunk_token_frames(int(f))] for grid, f in zip(data["tokens"], data["chunk_frames"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("groups", nargs="+", help="SCALE:CHUNKS:VIDEO[,VIDEO...] (SCALE: a factor, default or qN)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--eval", type=Path, default=None)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    chunks = []
    for group in args.groups:
        scale, n, videos = group.split(":", 2)
        if scale.startswith("q"):
            chunks += encoded_chunks(args.cache, int(scale[1:]), int(n), videos.split(","))
        else:
            chunks += cached_chunks(args.cache, scale, int(n), videos.split(","))
    config = ContextNetConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), steps=args.steps)
    start = time.time()
    net, fit = fit_context_net(chunks, BITS, config)
    print(f"{config}: {fit.tokens} tokens, {fit.float_bits:.4f} bits/token in float, {fit.int_bits:.4f} in "
          f"integers, {time.time() - start:.0f} s", flush=True)
    shipped = load_prior(MODEL, BITS)
    EntropyPrior(BITS, shipped.tables, net).save(args.out)
    print(f"wrote {args.out} (prior {EntropyPrior.load(args.out).id:08x})")
    for path in sorted(glob.glob(f"{args.eval}/*.npz")) if args.eval else []:
        pairs = [chunk_examples(c.astype(np.int64) & 63, BITS) for c in archive_chunks(Path(path))]
        x, y = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        old, new = int_bits(shipped.net, x, y), int_bits(net, x, y)
        print(f"{Path(path).stem}: shipped {old:.4f}, new {new:.4f} bits/token ({100 * (new / old - 1):+.1f}%)")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
