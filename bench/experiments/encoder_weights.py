"""Experiment: the same decoder fed by other encoder weights (encoder-only training).

Run: .venv/bin/python bench/experiments/encoder_weights.py [--encoder RUN/checkpoint.pt|W.safetensors]
         [--quality 0,2,4] [--refine N] CLIP:FRAMES...
Codes the first FRAMES frames of each CLIP as one chunk (`streaming.stateful.encode_chunk`, hysteresis
0.2, as `tokcodec encode` does) with the default model, its encoder replaced by the given weights (a
training checkpoint's EMA or a safetensors file; the decoder must be the shipped one), and prints the
RGB PSNR of the decoded chunk and the bpp of its entropy-coded tokens (the shipped priors)."""

import argparse
import itertools
import time

import numpy as np
import torch
from safetensors.torch import load_file

from tokcodec.bitstream.entropy import EntropyParams, encode_tokens
from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import frames_to_video, video_to_frames
from tokcodec.codec.io import iter_frames
from tokcodec.priors import model_prior
from tokcodec.streaming.refine import RefineConfig, encode_refined
from tokcodec.streaming.stateful import decode_chunk

ap = argparse.ArgumentParser()
ap.add_argument("clips", nargs="+")
ap.add_argument("--encoder")
ap.add_argument("--quality", default="0,2,4")
ap.add_argument("--refine", type=int, default=0)
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
if args.encoder:
    state = (load_file(args.encoder) if args.encoder.endswith(".safetensors")
             else torch.load(args.encoder, map_location="cpu", weights_only=False)["ema"])
    for key, value in tokenizer.state_dict().items():
        if key.startswith("decoder.") and not torch.equal(value, state[key].float()):
            raise SystemExit(f"{args.encoder}: another decoder ({key} differs)")
    tokenizer.load_state_dict({k: v.float() for k, v in state.items()})
for spec in args.clips:
    path, n = spec.rsplit(":", 1)
    frames = np.stack(list(itertools.islice(iter_frames(path), int(n))))
    video = frames_to_video(frames)
    T, H, W = video.shape[-3:]
    for quality in map(int, args.quality.split(",")):
        bits = tokenizer.level_bits(quality)
        prior = model_prior(tokenizer, bits)
        start = time.time()
        tokens = encode_refined(tokenizer, video, bits, 0.2, RefineConfig(steps=args.refine), (T, H, W))
        seconds = time.time() - start
        out = video_to_frames(decode_chunk(tokenizer, tokens, (T, H, W), bits))
        mse = np.mean((out.astype(np.float64) - frames) ** 2)
        grid = tokens[0].numpy()
        coded = encode_tokens(grid, bits, EntropyParams.for_encoding(prior, grid.shape[1] * grid.shape[2]), prior)
        print(f"{path.rsplit('/', 1)[-1]} {T} frames quality {quality}: {10 * np.log10(255**2 / mse):.3f} dB, "
              f"{8 * len(coded) / (T * H * W):.4f} bpp, encode {seconds:.1f} s", flush=True)
