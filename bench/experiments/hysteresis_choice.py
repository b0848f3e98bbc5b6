"""Experiment: what each hysteresis threshold costs and saves, chunk by chunk.

Run: .venv/bin/python bench/experiments/hysteresis_choice.py [--quality 2,4,6] [--thresholds 0,0.1,0.2,0.3]
         CLIP:FRAMES...
Cuts the first FRAMES frames of each CLIP into 33-frame chunks, as `tokcodec encode` does, and codes
each chunk at each ladder point of the default model with each hysteresis threshold (the same encoder
latent quantised differently), then prints per chunk the entropy-coded bytes (shipped priors) and the
PSNR-Y (BT.601) and RGB PSNR of the decoded chunk resampled back to the source size.
"""

import argparse
import sys
from pathlib import Path

import torch
from chunk_coding import decoded_and_bpp, first_frames, psnr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import psnr_y, rgb_to_y

from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import coded_size, frames_to_video, resize_frames
from tokcodec.ladder import model_ladder
from tokcodec.streaming.stateful import encode_latent, latent_tokens

CHUNK = 33

ap = argparse.ArgumentParser()
ap.add_argument("clips", nargs="+")
ap.add_argument("--quality", default="2,4,6")
ap.add_argument("--thresholds", default="0,0.1,0.2,0.3")
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
ladder = model_ladder(tokenizer.config)
thresholds = [float(h) for h in args.thresholds.split(",")]
for spec in args.clips:
    path, n = spec.rsplit(":", 1)
    frames, _ = first_frames(path, int(n))
    T, H, W = frames.shape[:3]
    for c in range(0, T - CHUNK + 1, CHUNK):
        chunk = frames[c : c + CHUNK]
        y_ref = rgb_to_y(chunk)
        for q in (int(q) for q in args.quality.split(",")):
            point = ladder.for_frame(q, W, H)
            bits = tokenizer.config.lfq.level_bits[point.level]
            cw, ch = coded_size(W, H, point.scale)
            with torch.no_grad():
                z = encode_latent(tokenizer, frames_to_video(resize_frames(chunk, ch, cw)))
            row = []
            for h in thresholds:
                tokens = latent_tokens(z, bits, h)
                out, bpp = decoded_and_bpp(tokenizer, tokens, bits, (CHUNK, ch, cw))
                out = resize_frames(out, H, W)
                nbytes = bpp * CHUNK * ch * cw / 8
                row.append(f"H{h:g} {nbytes:8.0f} B {psnr_y(y_ref, rgb_to_y(out)):.3f} {psnr(out, chunk):.3f}")
            print(f"{Path(path).name} chunk {c // CHUNK} q{q}: " + " | ".join(row), flush=True)
