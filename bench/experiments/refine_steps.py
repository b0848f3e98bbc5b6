"""Experiment: quality and rate of encoder-side refinement against its number of steps.

Run: .venv/bin/python bench/experiments/refine_steps.py CLIP FRAMES BITS STEPS[,STEPS...] LR [RATE]
Encodes the first FRAMES frames of CLIP as one chunk with `streaming.refine.encode_refined`
(the default model, hysteresis 0.2) for each number of steps, decodes the tokens, and prints the
RGB PSNR of the clip, the bpp of the entropy-coded tokens (the model's prior) and the encoding
time. Result in bench/RESULTS.md ("Rate-distortion with encoder-side refinement")."""

import sys
import time

import torch
from chunk_coding import decoded_and_bpp, first_frames, psnr

from tokcodec.codec import load_tokenizer
from tokcodec.streaming.refine import RefineConfig, encode_refined

path, n, bits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
step_counts, lr = [int(s) for s in sys.argv[4].split(",")], float(sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
frames, video = first_frames(path, n)
T, H, W = video.shape[-3:]
for steps in step_counts:
    start = time.time()
    tokens = encode_refined(tokenizer, video, bits, 0.2, RefineConfig(steps=steps, lr=lr, rate=rate), (T, H, W))
    seconds = time.time() - start
    out, bpp = decoded_and_bpp(tokenizer, tokens, bits, (T, H, W))
    print(f"steps {steps}: {psnr(out, frames):.3f} dB, {bpp:.4f} bpp, encode {seconds:.1f} s", flush=True)
