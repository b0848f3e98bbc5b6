"""Experiment: quality and rate of encoder-side refinement against its number of steps.

Run: .venv/bin/python bench/experiments/refine_steps.py CLIP FRAMES BITS STEPS[,STEPS...] LR [RATE]
Encodes the first FRAMES frames of CLIP as one chunk with `streaming.refine.encode_refined`
(the default model, hysteresis 0.2) for each number of steps, decodes the tokens, and prints the
RGB PSNR of the clip, the bpp of the entropy-coded tokens (the model's prior) and the encoding
time. Result in bench/RESULTS.md ("Rate-distortion with encoder-side refinement")."""

import itertools
import sys
import time

import numpy as np
import torch

from tokcodec.bitstream.entropy import EntropyParams, encode_tokens
from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import frames_to_video, video_to_frames
from tokcodec.codec.io import iter_frames
from tokcodec.priors import model_prior
from tokcodec.streaming.refine import RefineConfig, encode_refined
from tokcodec.streaming.stateful import decode_chunk

path, n, bits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
step_counts, lr = [int(s) for s in sys.argv[4].split(",")], float(sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
frames = np.stack(list(itertools.islice(iter_frames(path), n)))
video = frames_to_video(frames)
T, H, W = video.shape[-3:]
prior = model_prior(tokenizer, bits)
for steps in step_counts:
    start = time.time()
    tokens = encode_refined(tokenizer, video, bits, 0.2, RefineConfig(steps=steps, lr=lr, rate=rate), (T, H, W))
    seconds = time.time() - start
    out = video_to_frames(decode_chunk(tokenizer, tokens, (T, H, W), bits))
    mse = np.mean((out.astype(np.float64) - frames) ** 2)
    grid = tokens[0].numpy()
    coded = encode_tokens(grid, bits, EntropyParams.for_encoding(prior, grid.shape[1] * grid.shape[2]), prior)
    print(f"steps {steps}: {10 * np.log10(255**2 / mse):.3f} dB, {8 * len(coded) / (n * H * W):.4f} bpp, "
          f"encode {seconds:.1f} s", flush=True)
