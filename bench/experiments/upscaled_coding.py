"""Experiment: does a finer token grid beat more bits per token? The shipped model run on an upscaled clip.

Run: .venv/bin/python bench/experiments/upscaled_coding.py CLIP FRAMES SCALES BITS [REFINE_STEPS]
e.g. ... carphone_pristine.mp4 33 1,1.5,2 6,12,18,30
Upscales the first FRAMES frames of CLIP by each scale (`codec.clips.resize_video`, as `encode --scale`), codes them with the
default model at each number of bits (hysteresis 0.2; with REFINE_STEPS, refined as
`tokcodec encode --refine` does, on the upscaled frames), decodes, scales back to the source size and
prints the RGB PSNR against the source and the bpp of the entropy-coded tokens per *source* pixel.
Result in bench/RESULTS.md ("Coding at a finer token grid").
"""

import sys
import time

import torch
from chunk_coding import decoded_and_bpp, first_frames, psnr

from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import resize_frames, resize_video
from tokcodec.streaming.refine import RefineConfig, encode_refined

torch.set_num_threads(2)
path, n = sys.argv[1], int(sys.argv[2])
scales = [float(s) for s in sys.argv[3].split(",")]
refine = RefineConfig(steps=int(sys.argv[5]) if len(sys.argv) > 5 else 0)
tok = load_tokenizer(None).eval()
frames, video = first_frames(path, n)
T, H, W = video.shape[-3:]
for s in scales:
    h, w = int(round(H * s / 2) * 2), int(round(W * s / 2) * 2)
    up = resize_video(video, h, w)
    for bits in [int(b) for b in sys.argv[4].split(",")]:
        t0 = time.time()
        tokens = encode_refined(tok, up, bits, 0.2, refine) if refine.steps else tok.encode(up, bits=bits, hysteresis=0.2)
        out, bpp = decoded_and_bpp(tok, tokens, bits, (T, h, w))
        print(f"scale {s} ({w}x{h}) bits {bits}: {psnr(resize_frames(out, H, W), frames):.2f} dB, "
              f"{bpp * h * w / (H * W):.4f} bpp, {time.time()-t0:.0f}s", flush=True)
