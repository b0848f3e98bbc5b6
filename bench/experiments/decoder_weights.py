"""Experiment: the same tokens decoded by other decoder weights (decoder-only training).

Run: .venv/bin/python bench/experiments/decoder_weights.py [--decoder RUN/checkpoint.pt|W.safetensors]...
         [--quality 0,2,4] [--hysteresis 0.2,0.8] CLIP:FRAMES...
Codes the first FRAMES frames of each CLIP as one chunk at each ladder point of the default model, as
`tokcodec encode --quality Q --hysteresis H` does (frames resampled to the point's scale, at each given fixed
hysteresis threshold, default the streaming one, 0.2; the shipped encoder), then decodes the same tokens with the
shipped decoder and with each given one (a training checkpoint's EMA or a safetensors file whose encoder must
be the shipped one), resamples back and prints PSNR-Y (BT.601) and RGB PSNR against the source, and the bpp
of the entropy-coded tokens (the shipped priors: the tokens are the same for every decoder, so is the rate).
"""

import argparse
import sys
from pathlib import Path

import torch
from chunk_coding import decode_to_source, decoded_and_bpp, encode_at_point, first_frames, load_decoder_state, psnr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import psnr_y, rgb_to_y

from tokcodec.codec import load_tokenizer
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS
from tokcodec.ladder import model_ladder


ap = argparse.ArgumentParser()
ap.add_argument("clips", nargs="+")
ap.add_argument("--decoder", action="append", default=[])
ap.add_argument("--quality", help="ladder points (default: all)")
ap.add_argument("--hysteresis", default=str(DEFAULT_HYSTERESIS), help="fixed thresholds to code with, e.g. 0.2,0.8")
args = ap.parse_args()
torch.set_num_threads(2)
tokenizer = load_tokenizer(None).eval()
shipped = {k: v.clone() for k, v in tokenizer.state_dict().items()}
decoders = {"shipped": shipped}
for path in args.decoder:
    decoders[path] = load_decoder_state(path, shipped)
ladder = model_ladder(tokenizer.config)
qualities = [int(q) for q in args.quality.split(",")] if args.quality else range(len(ladder.points))
for spec in args.clips:
    path, n = spec.rsplit(":", 1)
    frames, _ = first_frames(path, int(n))
    T, H, W = frames.shape[:3]
    y_ref = rgb_to_y(frames)
    for q, h in ((q, float(h)) for q in qualities for h in args.hysteresis.split(",")):
        # whichever state is loaded, its encoder is the shipped one (checked above)
        tokens, point, bits, coded = encode_at_point(tokenizer, frames, q, h)
        _, bpp = decoded_and_bpp(tokenizer, tokens, bits, coded)  # the rate: the same for every decoder
        ch, cw = coded[1:]
        row = []
        for state in decoders.values():
            tokenizer.load_state_dict(state)
            out = decode_to_source(tokenizer, tokens, bits, coded, H, W)
            row.append(f"{psnr_y(y_ref, rgb_to_y(out)):.3f}/{psnr(out, frames):.3f}")
        print(f"{Path(path).name} q{q} {point.scale:g}x {bits} bits h{h:g} {bpp * ch * cw / (H * W):.4f} bpp: "
              f"PSNR-Y/RGB " + "  ".join(row), flush=True)
print("decoders: " + ", ".join(decoders), flush=True)
