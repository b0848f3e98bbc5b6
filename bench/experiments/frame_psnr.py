"""Experiment: PSNR-Y of each frame of one chunk, coded by other weights (encoder and decoder).

Run: .venv/bin/python bench/experiments/frame_psnr.py [--hysteresis H] CLIP FRAMES QUALITY WEIGHTS...
WEIGHTS: a .safetensors file, or a training checkpoint as RUN/checkpoint.pt (its EMA weights) or
RUN/checkpoint.pt:model (its raw weights). Codes the first FRAMES frames of CLIP as one chunk at
ladder point QUALITY of the default model, as `tokcodec encode --quality` does (resampled to the
point's scale, the default hysteresis unless --hysteresis, bfloat16 autocast), decodes, resamples
back and prints the mean and each frame's PSNR-Y (BT.601) against the source. Shows where in a
chunk a model loses: the first latent frame (one video frame) or the later ones (four each).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from chunk_coding import decode_to_source, encode_at_point, first_frames, load_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import rgb_to_y

from tokcodec.codec import load_tokenizer
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS

ap = argparse.ArgumentParser()
ap.add_argument("clip")
ap.add_argument("frames", type=int)
ap.add_argument("quality", type=int)
ap.add_argument("weights", nargs="+")
ap.add_argument("--hysteresis", type=float, default=DEFAULT_HYSTERESIS)
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
frames, _ = first_frames(args.clip, args.frames)
T, H, W = frames.shape[:3]
y_ref = rgb_to_y(frames).astype(np.float64)
for spec in args.weights:
    tokenizer.load_state_dict(load_state(spec))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, _, bits, coded = encode_at_point(tokenizer, frames, args.quality, args.hysteresis)
        out = decode_to_source(tokenizer, tokens, bits, coded, H, W)
    mse = ((rgb_to_y(out).astype(np.float64) - y_ref) ** 2).reshape(T, -1).mean(1)
    per_frame = " ".join(f"{p:.1f}" for p in 10 * np.log10(255**2 / mse))
    print(f"{spec}: mean {10 * np.log10(255**2 / mse.mean()):.2f} dB | {per_frame}", flush=True)
