"""Export the tokenizer's streaming steps to ONNX.

Four graphs, because a chunk's first step and the steps after it differ in
shape (see `stateful.py`):

    encoder_first.onnx  frames (B, 3, 1, H, W)            -> latent (B, K, 1, H', W'), caches...
    encoder_step.onnx   frames (B, 3, t, H, W), caches... -> latent (B, K, 1, H', W'), caches...
    decoder_first.onnx  latent (B, K, 1, H', W')          -> frames (B, 3, 1, H, W), caches...
    decoder_step.onnx   latent (B, K, 1, H', W'), caches...-> frames (B, 3, t, H, W), caches...

Frames are float in [-1, 1] with H and W multiples of the spatial factor;
the encoder's latent is z before quantisation (the caller quantises it,
with hysteresis against the previous step; a lower quality level masks
bits); the decoder takes the latent as codes in {-1, +1} with 0 for
channels a level drops.
Batch, height and width are dynamic axes everywhere (the caches' too).
`manifest.json` records the export format, the model, its fingerprint,
factors, levels and the cache names, so the runtime can check what it opens.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from tokcodec.codec import Tokenizer, fingerprint

from .stateful import DecoderStep, EncoderStep, _temporal_convs

OPSET = 17
# 2: the encoder graphs output the latent before quantisation (1: tokens)
FORMAT = 2
GRAPHS = ("encoder_first", "encoder_step", "decoder_first", "decoder_step")


class _DecoderFromLatent(nn.Module):
    """DecoderStep taking the latent codes instead of tokens (so levels need no graph of their own)."""

    def __init__(self, step: DecoderStep) -> None:
        super().__init__()
        self.step = step

    def forward(self, latent: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.step.forward_latent(latent, *caches)


def export_onnx(tokenizer: Tokenizer, out_dir: str | os.PathLike, height: int = 64, width: int = 64) -> Path:
    """Write the four ONNX graphs and manifest.json into `out_dir` (created; replaced atomically).

    `height`/`width` only size the example inputs used for tracing.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "manifest.json").is_file():
        raise FileExistsError(f"{out_dir}: exists and is not an exported model folder; not replacing it")
    tokenizer = tokenizer.eval()
    cfg = tokenizer.config
    t, s, k = tokenizer.temporal_factor, tokenizer.spatial_factor, cfg.bits
    h, w = -(-height // s) * s, -(-width // s) * s
    frames1 = torch.zeros(1, 3, 1, h, w).uniform_(-1, 1)
    frames_t = torch.zeros(1, 3, t, h, w).uniform_(-1, 1)
    n_enc = len(_temporal_convs(tokenizer.encoder))
    n_dec = len(_temporal_convs(tokenizer.decoder))
    # In eval mode too: torch.onnx.export gives each module back the mode it had,
    # and a new wrapper's (training) would reach the tokenizer's networks inside it.
    enc_first, enc_step = EncoderStep(tokenizer, True).eval(), EncoderStep(tokenizer, False).eval()
    dec_first = _DecoderFromLatent(DecoderStep(tokenizer, True)).eval()
    dec_step = _DecoderFromLatent(DecoderStep(tokenizer, False)).eval()
    with torch.no_grad():
        z, *enc_caches = enc_first(frames1)
        latent = torch.where(z > 0, 1.0, -1.0)
        _, *dec_caches = dec_first(latent)
    enc_cache_names = [f"enc_cache{i}" for i in range(n_enc)]
    dec_cache_names = [f"dec_cache{i}" for i in range(n_dec)]

    def axes(names: list[str], spatial: str) -> dict[str, dict[int, str]]:
        return {n: {0: "batch", 3: f"{spatial}_h{i}", 4: f"{spatial}_w{i}"} for i, n in enumerate(names)}

    frames_axes = {0: "batch", 3: "height", 4: "width"}
    latent_axes = {0: "batch", 3: "latent_h", 4: "latent_w"}
    new_enc = [f"new_{n}" for n in enc_cache_names]
    new_dec = [f"new_{n}" for n in dec_cache_names]
    jobs = [
        ("encoder_first", enc_first, (frames1,), ["frames"], ["latent", *new_enc],
         {"frames": frames_axes, "latent": latent_axes, **axes(new_enc, "enc")}),
        ("encoder_step", enc_step, (frames_t, *enc_caches), ["frames", *enc_cache_names], ["latent", *new_enc],
         {"frames": frames_axes, "latent": latent_axes, **axes(enc_cache_names, "enc"), **axes(new_enc, "enc")}),
        ("decoder_first", dec_first, (latent,), ["latent"], ["frames", *new_dec],
         {"latent": latent_axes, "frames": frames_axes, **axes(new_dec, "dec")}),
        ("decoder_step", dec_step, (latent, *dec_caches), ["latent", *dec_cache_names], ["frames", *new_dec],
         {"latent": latent_axes, "frames": frames_axes, **axes(dec_cache_names, "dec"), **axes(new_dec, "dec")}),
    ]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, module, args, inputs, outputs, dynamic in jobs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks
                torch.onnx.export(module, args, str(tmp / f"{name}.onnx"), input_names=inputs, output_names=outputs,
                                  dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
            import onnx

            onnx.checker.check_model(str(tmp / f"{name}.onnx"), full_check=True)
        manifest = {
            "format": FORMAT,
            "model": cfg.name,
            "fingerprint": fingerprint(tokenizer),
            "temporal_factor": t,
            "spatial_factor": s,
            "bits": k,
            "levels": list(cfg.lfq.level_bits),
            "encoder_caches": enc_cache_names,
            "decoder_caches": dec_cache_names,
            "opset": OPSET,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
