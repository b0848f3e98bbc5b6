"""Experiment: how much of the default point's luma error is a global gain and offset?

Run: .venv/bin/python bench/experiments/luma_affine.py [QUALITY,...]
Codes the first 33 frames of each eval clip as one chunk at each ladder point (shipped weights,
hysteresis 0.2), decodes, and prints the PSNR-Y (mean over frames; BT.601 luma of the decoded RGB
against that of the source's RGB frames, so not bench/rd.py's reference) as decoded, after the least-squares
gain and offset of the whole chunk's luma (two numbers of side information an encoder could send per
chunk), and after one gain and offset per frame.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from chunk_coding import decode_to_source, encode_at_point, first_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import psnr_y, rgb_to_y

from tokcodec.codec import load_tokenizer

CLIPS = ("carphone_pristine.mp4", "realshort.mp4", "ChID-BLITS-EBU.mp4")


torch.set_num_threads(2)
tok = load_tokenizer(None).eval()
corpus = Path.home() / ".cache" / "tokcodec" / "corpus"
qualities = [int(q) for q in sys.argv[1].split(",")] if len(sys.argv) > 1 else [2, 4]
for clip in CLIPS:
    src, _ = first_frames(str(corpus / clip), 33)
    T, H, W = src.shape[:3]
    for q in qualities:
        tokens, _, bits, coded = encode_at_point(tok, src, q, 0.2)
        ys = rgb_to_y(src).astype(np.float64)
        yd = rgb_to_y(decode_to_source(tok, tokens, bits, coded, H, W)).astype(np.float64)
        gain, offset = np.polyfit(yd.ravel(), ys.ravel(), 1)
        per_frame = np.stack([np.polyval(np.polyfit(d.ravel(), s.ravel(), 1), d) for d, s in zip(yd, ys)])
        print(f"{clip} quality {q}: PSNR-Y {psnr_y(ys, yd):.2f} dB, chunk gain/offset "
              f"{psnr_y(ys, np.clip(gain * yd + offset, 0, 255)):.2f} ({gain:.3f}, {offset:+.1f}), per frame "
              f"{psnr_y(ys, np.clip(per_frame, 0, 255)):.2f}", flush=True)
