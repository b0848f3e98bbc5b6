"""Encoder-side token refinement: choose the tokens the decoder reconstructs best.

The encoder's latent z is trained to quantise well on average; for one
clip, the tokens sign(z) are not the ones whose decoding is closest to it.
Refinement starts from z and takes a few Adam steps on the reconstruction
error of the decoded clip plus a rate term (the bits that change from one
latent frame to the next, which is what the entropy coder pays for),
through the quantiser with a straight-through gradient (forward: the signs
the encoder will send, hysteresis included; backward: identity), then
quantises as before. The decoder and the format do not change: it is an
encoder-side search, like a slower x264 preset.

A chunk is refined a decoder segment at a time (the segments of
`stateful.decode_chunk`): the caches of the decoder's causal convolutions
come from the already refined segments and are held fixed, so the memory is
that of one segment's backward pass, whatever the chunk length.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokcodec.codec.lfq import bits_to_indices, hysteresis_signs
from tokcodec.codec.model import Tokenizer

from .stateful import _LOCKS, DecoderStep, _segments, encode_chunk, encode_latent, segment_frames_for


@dataclass(frozen=True)
class RefineConfig:
    """steps: Adam steps per segment (0: no refinement); lr: their step size
    on the latent (the encoder's latents are of order 1); rate: weight of the
    bits that change from one latent frame to the next, per pixel (what the
    entropy coder pays for), against the squared error in [-1, 1] units.
    0.3 was chosen on carphone (bench/RESULTS.md): 30% fewer bits than 0 for
    0.05 dB; without it the search flips bits freely and a static picture
    costs 3.6 times the bits."""

    steps: int = 0
    lr: float = 0.1
    rate: float = 0.3

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refine lr must be > 0, got {self.lr}")
        if not self.rate >= 0:
            raise ValueError(f"refine rate must be >= 0, got {self.rate}")


def encode_refined(tokenizer: Tokenizer, video: torch.Tensor, bits: int | None, hysteresis: float,
                   config: RefineConfig, size: tuple[int, int, int] | None = None,
                   segment_frames: int | None = None) -> torch.Tensor:
    """`stateful.encode_chunk` with refinement: tokens (1, T', H', W') of one
    chunk (1, 3, T, H, W) whose first `size` = (T, H, W) frames are the clip
    (default: all of it); `segment_frames` as in `encode_chunk`."""
    if not config.steps:
        return encode_chunk(tokenizer, video, bits, hysteresis, segment_frames)
    bits = tokenizer._check_bits(bits)
    z = encode_latent(tokenizer, video, segment_frames)
    return refine_tokens(tokenizer, tokenizer.pad(video), z, bits, hysteresis, config, size or video.shape[-3:],
                         segment_frames)


def _changes(latent: torch.Tensor, previous: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor:
    """How many kept bits of `latent` (+-1, straight through) differ from the
    latent frame before (`previous` bits before the first; none for a
    chunk's first), differentiable in `latent`."""
    before = latent[:, :, :-1]
    if previous is not None:
        before = torch.cat([((previous.to(latent.dtype) * 2 - 1) * keep[:, :, 0])[:, :, None], before], dim=2)
    now = latent[:, :, latent.shape[2] - before.shape[2]:]
    return ((1 - now * before) / 2 * keep).sum()


def refine_tokens(tokenizer: Tokenizer, video: torch.Tensor, z: torch.Tensor, bits: int, hysteresis: float,
                  config: RefineConfig, size: tuple[int, int, int] | None = None,
                  segment_frames: int | None = None) -> torch.Tensor:
    """Tokens (1, T', H', W') of `bits` bits for the padded chunk `video`
    (1, 3, T, H, W) in [-1, 1], starting from the encoder's latent z (1, K,
    T', H', W'). Per decoder segment: `config.steps` Adam steps on the mean
    squared error of the decoded segment (over the first `size` = (T, H, W)
    of the chunk, the unpadded clip) plus `config.rate` times the changed
    bits per pixel, each step's latent quantised with `hysteresis` as
    `Tokenizer.encode` quantises; the tokens of the step with the lowest
    loss are kept, so a segment's loss is never above the unrefined
    tokens' given the segments before it."""
    t = tokenizer.temporal_factor
    n, h, w = size or video.shape[-3:]
    keep = (torch.arange(z.shape[1], device=z.device) < bits).view(1, -1, 1, 1, 1).to(z.dtype)
    per = ((segment_frames or segment_frames_for(*video.shape[-2:])) - 1) // t
    steps = {True: DecoderStep(tokenizer, True), False: DecoderStep(tokenizer, False)}
    frozen = [p for p in tokenizer.decoder.parameters() if p.requires_grad]
    caches: list | None = None
    previous = None
    out = []
    with _LOCKS.setdefault(tokenizer, threading.Lock()), torch.enable_grad():
        try:
            for p in frozen:  # gradients for the latent only
                p.requires_grad_(False)
            for a, b in _segments(z.shape[2], 1 + per):
                f0 = 0 if a == 0 else 1 + t * (a - 1)  # the segment's first frame
                f1 = max(min(1 + t * (b - 1), n), f0 + 1)  # at least one frame (padding repeats the last)
                target = video[:, :, f0:f1, :h, :w]
                step = steps[caches is None]
                zs = z[:, :, a:b].detach().clone().requires_grad_(True)
                opt = torch.optim.Adam([zs], lr=config.lr)
                best, best_loss = None, float("inf")
                for i in range(config.steps + 1):
                    hard = hysteresis_signs(zs.detach(), hysteresis, previous)
                    code = (hard.to(zs.dtype) * 2 - 1) * keep
                    latent = zs + (code - zs).detach()  # straight through
                    y, *_ = step.forward_latent(latent, *(caches or []))
                    loss = F.mse_loss(y[:, :, : f1 - f0, :h, :w], target)
                    if config.rate:
                        loss = loss + config.rate * _changes(latent, previous, keep) / target[0, 0].numel()
                    if loss.item() < best_loss:
                        best, best_loss = hard, loss.item()
                    if i < config.steps:
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                with torch.no_grad():
                    _, *caches = step.forward_latent((best.to(zs.dtype) * 2 - 1) * keep, *(caches or []))
                previous = best[:, :, -1]
                out.append(bits_to_indices(best, dim=1))
        finally:
            for p in frozen:
                p.requires_grad_(True)
    tokens = torch.cat(out, dim=1)
    return tokens if bits == z.shape[1] else tokens & ((1 << bits) - 1)
