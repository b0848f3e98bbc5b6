"""Experiment: where in frequency and time another decoder's luma error differs from the shipped decoder's.

Run: .venv/bin/python bench/experiments/decoder_contrast.py --decoder W.safetensors|RUN/checkpoint.pt
         [--quality 2,4] [--hysteresis 0.2] CLIP:FRAMES...
Codes the first FRAMES frames of each CLIP as one chunk at each ladder point (as `decoder_weights.py` does:
the shipped encoder, a fixed hysteresis threshold), decodes the same tokens with the shipped decoder and the
given one, and prints for each decoder, on BT.601 luma:
- the energy per radial spatial-frequency band (fractions of Nyquist) of its output and of its error, each
  frame's mean removed, next to the source's: a decoder that flattens large-scale contrast loses output
  energy and gains error in the lowest band, one that drops detail in the highest;
- the contrast slope: the least-squares gain of its mean-removed output on the mean-removed source, per
  frame, averaged (1 would keep contrast; lower means the output hedges toward each frame's mean);
- the per-frame PSNR-Y gain of the given decoder over the shipped one, averaged over frames 0-8, 9-16
  and 17 on (the training clips are 9 or 17 frames long; the chunks `encode` writes, 33).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from chunk_coding import decode_to_source, encode_at_point, first_frames, load_decoder_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics import frame_mse, psnr, rgb_to_y

from tokcodec.codec import load_tokenizer
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS

BANDS = (0, 0.125, 0.25, 0.5, 1.5)  # radial frequency / Nyquist; the last band takes the corners (up to sqrt 2)


def band_energy(y: np.ndarray) -> list[float]:
    """Mean energy per frame in each of BANDS of luma frames (T, H, W), each frame's mean removed."""
    t, h, w = y.shape
    spectrum = np.abs(np.fft.rfft2(y - y.mean(axis=(1, 2), keepdims=True))) ** 2
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]) / 0.5
    return [spectrum[:, (radius >= lo) & (radius < hi)].sum() / (h * w * t) for lo, hi in zip(BANDS, BANDS[1:])]


def contrast_slope(y: np.ndarray, ref: np.ndarray) -> float:
    """Mean over frames of the least-squares gain of y on ref, each frame's mean removed."""
    yo = y - y.mean(axis=(1, 2), keepdims=True)
    yr = ref - ref.mean(axis=(1, 2), keepdims=True)
    return float(np.mean((yo * yr).sum(axis=(1, 2)) / (yr**2).sum(axis=(1, 2))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--quality", default="2,4")
    ap.add_argument("--hysteresis", type=float, default=DEFAULT_HYSTERESIS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tokenizer = load_tokenizer(None).eval()
    shipped = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    other = load_decoder_state(args.decoder, shipped)
    fmt = lambda values: " ".join(f"{v:10.4g}" for v in values)  # noqa: E731
    for spec in args.clips:
        path, n = spec.rsplit(":", 1)
        frames, _ = first_frames(path, int(n))
        t, h, w = frames.shape[:3]
        ref = rgb_to_y(frames).astype(np.float64)
        for q in (int(v) for v in args.quality.split(",")):
            tokens, _, bits, coded = encode_at_point(tokenizer, frames, q, args.hysteresis)
            print(f"{Path(path).name} q{q} h{args.hysteresis:g}; bands (x Nyquist) "
                  + " ".join(f"{lo:g}-{hi:g}" for lo, hi in zip(BANDS, BANDS[1:])))
            print(f"  source   output {fmt(band_energy(ref))}")
            psnrs = []
            for name, state in (("shipped", shipped), ("other", other)):
                tokenizer.load_state_dict(state)
                y = rgb_to_y(decode_to_source(tokenizer, tokens, bits, coded, h, w)).astype(np.float64)
                psnrs.append(np.array([psnr(m) for m in frame_mse(ref, y)]))
                print(f"  {name:8s} output {fmt(band_energy(y))}  error {fmt(band_energy(y - ref))}  "
                      f"slope {contrast_slope(y, ref):.4f}  PSNR-Y {psnrs[-1].mean():.3f}")
            tokenizer.load_state_dict(shipped)
            gain = psnrs[1] - psnrs[0]
            spans = [(f"{lo}-{min(hi, t) - 1}", gain[lo:hi].mean()) for lo, hi in ((0, 9), (9, 17), (17, t)) if lo < t]
            print("  PSNR-Y gain of the other decoder: "
                  + ", ".join(f"frames {name} {value:+.3f}" for name, value in spans), flush=True)


if __name__ == "__main__":
    main()
