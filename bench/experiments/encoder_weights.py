"""Experiment: the same decoder fed by other encoder weights (encoder-only training).

Run: .venv/bin/python bench/experiments/encoder_weights.py [--encoder RUN/checkpoint.pt|W.safetensors]
         [--quality 0,2,4] [--refine N] CLIP:FRAMES...
Codes the first FRAMES frames of each CLIP as one chunk (`streaming.stateful.encode_chunk`, hysteresis
0.2, as `tokcodec encode` does) with the default model, its encoder replaced by the given weights (a
training checkpoint's EMA or a safetensors file; the decoder must be the shipped one), and prints the
RGB PSNR of the decoded chunk and the bpp of its entropy-coded tokens (the shipped priors)."""

import argparse
import time

import torch
from chunk_coding import decoded_and_bpp, first_frames, load_state, psnr

from tokcodec.codec import load_tokenizer
from tokcodec.streaming.refine import RefineConfig, encode_refined

ap = argparse.ArgumentParser()
ap.add_argument("clips", nargs="+")
ap.add_argument("--encoder")
ap.add_argument("--quality", default="0,2,4")
ap.add_argument("--refine", type=int, default=0)
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
if args.encoder:
    state = load_state(args.encoder)
    for key, value in tokenizer.state_dict().items():
        if key.startswith("decoder.") and not torch.equal(value, state[key]):
            raise SystemExit(f"{args.encoder}: another decoder ({key} differs)")
    tokenizer.load_state_dict(state)
for spec in args.clips:
    path, n = spec.rsplit(":", 1)
    frames, video = first_frames(path, int(n))
    T, H, W = video.shape[-3:]
    for quality in map(int, args.quality.split(",")):
        bits = tokenizer.level_bits(quality)
        start = time.time()
        tokens = encode_refined(tokenizer, video, bits, 0.2, RefineConfig(steps=args.refine), (T, H, W))
        seconds = time.time() - start
        out, bpp = decoded_and_bpp(tokenizer, tokens, bits, (T, H, W))
        print(f"{path.rsplit('/', 1)[-1]} {T} frames quality {quality}: {psnr(out, frames):.3f} dB, "
              f"{bpp:.4f} bpp, encode {seconds:.1f} s", flush=True)
