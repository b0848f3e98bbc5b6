"""Encoder-side token refinement: choose the tokens the decoder reconstructs best.

The encoder's latent z is trained to quantise well on average; for one
clip, the tokens sign(z) are not the ones whose decoding is closest to it.
Refinement starts from z and takes a few gradient steps (`PlaneStep`) on
the reconstruction error of the decoded clip (squared error, its coarse part discounted where
the file's coarse layers will correct it, optionally SSIM) plus a rate term
(the bits the tokens cost: under entropy models 3 and 4 what their context
nets spend on them, `net_rate`; otherwise the bits that change from one latent
frame to the next, each priced at what a change of its bit plane costs in
this chunk), through the quantiser with a straight-through gradient (forward: the signs
the encoder will send, hysteresis included; backward: identity), then
quantises as before. The decoder and the format do not change: it is an
encoder-side search, like a slower x264 preset.

A chunk is refined a decoder segment at a time (the segments of
`stateful.decode_chunk`): the caches of the decoder's causal convolutions
come from the already refined segments and are held fixed, so the memory is
that of one segment's backward pass, whatever the chunk length.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tokcodec.bitstream.context_net import ContextNet
from tokcodec.codec.clips import FrameVideo, video_to_frames
from tokcodec.codec.lfq import bit_changes, bits_to_indices, hysteresis_signs
from tokcodec.codec.losses import ssim as structural_similarity
from tokcodec.codec.model import Tokenizer
from tokcodec.memory import release_kept_memory, reuse_freed_memory

from .net_rate import NetRate
from .stateful import _LOCKS, DecoderStep, _segments, encode_latent, latent_tokens, segment_frames_for


# The encoder's default (`encode --refine`): two steps since the thirty-sixth
# session. One step (the default from the twenty-sixth; bench/RESULTS.md, "One
# refinement step by default") saves 16% to 25% of the bits against none for
# the same PSNR-Y / MS-SSIM / VMAF on the natural eval clips, for 3 to 5 times
# the encoding time; the second saves 5% to 8% more (carphone -7.3 / -7.5 /
# -1.2%, realshort -4.7 / -5.2 / -7.7%) for 1.2x to 2.2x the encoding time,
# affordable once the gradient step got a quarter faster (bench/RESULTS.md,
# "The refinement's backward by hand, and two steps"). Its backward pass takes
# about 2.7 times the memory of plain coding (8.4 against 3.1 GB for a 720p
# source coded at 1920x1080, before that), so the default refined frames coded
# at up to 720p's pixel count only. Since the fortieth session a segment
# whose second step still lowered its loss by more than 3% takes a third
# (`RefineConfig.extra` and `gain`), and, the backward pass recomputing the
# decoder blocks above 720p's count (`CHECKPOINT_PIXELS`), the default
# refines frames coded at up to 1080p's pixel count: every natural source
# measured there (a 480p pair, a 720p and a 1080p clip) needed 11% to 19%
# fewer bytes at the default point for a better picture by every metric, the
# test card 4% fewer for +0.4 dB and +4.9 VMAF, for 3 to 5 times the encoding
# time (bench/RESULTS.md, "The refinement's backward pass recomputes the
# decoder blocks at large frames"). 4K sources, coded at 1x, are not refined.
DEFAULT_STEPS = 2
DEFAULT_MAX_PIXELS = 1920 * 1080
# The coarse error's weight where the chunks may carry luma and chroma
# layers (`encode`'s default): the layers correct a chunk's error over blocks
# of about COARSE_BLOCK (frames, pixels, pixels) after the tokens are chosen,
# so the search leaves most of that part to them and spends the tokens on the
# rest (thirty-seventh session, bench/RESULTS.md, "The refinement leaves the
# coarse error to the layers").
COARSE_WEIGHT = 0.1
COARSE_BLOCK = (4, 16, 16)
NET_RATE = 0.5  # the default rate weight when the context net prices the bits
CHAIN_RATE = 0.25  # when entropy model 4's chain of nets does (quality 7, large frames' top points)
CHANGE_RATE = 0.25  # and when the changes do (see RefineConfig)
# Above this many coded pixels a frame's refinement keeps only the decoder
# blocks' inputs for its backward pass and recomputes the rest
# (`Decoder.checkpointing`; the same tokens): at 1920x1080 coded, a 9-frame
# chunk's `encode --refine 2` peaks at 6.8 instead of 9.2 GB and runs faster
# (63 against 75 s: less memory traffic); at 720p's pixel count and below the
# memory is small and recomputing costs a quarter more time (fortieth
# session, bench/RESULTS.md, "The refinement's backward pass recomputes the
# decoder blocks at large frames").
CHECKPOINT_PIXELS = 1280 * 720


@dataclass(frozen=True)
class RefineConfig:
    """steps: gradient steps per segment (0, this class's default: no
    refinement; the encoder's default is `DEFAULT_STEPS`); lr: their step
    size on the latent (the encoder's latents are of order 1), in units of
    each bit plane's RMS gradient (`PlaneStep`; 0.2 since the thirty-eighth
    session, chosen over 0.1 to 0.3 on carphone and realshort; the rate
    weights below were chosen under Adam's steps, and 0.35 and 0.7 did not
    beat 0.5 under these); rate: weight of the
    estimated bits per pixel, against the squared error in [-1, 1] units;
    None (the default) picks the weight for how the bits are estimated,
    `NET_RATE`, `CHAIN_RATE` or `CHANGE_RATE`.
    Under entropy model 3 the bits are the context net's (`NetRate`): 0.5
    was chosen on carphone, realshort and the test card at the default
    point (5 steps, bench/RESULTS.md): against no refinement, 1% / 11%
    fewer bits for +1.0 / +0.6 dB on carphone / realshort, 15% more bits
    for +0.7 dB on the card (0.25: +7% / -2% / +18% bits, +1.0 / +0.7 /
    +0.8 dB; 1: -9% / -19% / +8% bits, +0.9 / +0.4 / +0.7 dB).
    Under model 4 (quality 7, the top of the ladder, where the curve is
    flatter and bits buy less) 0.25: against 0.5, +2.7% / +2.6% bits for
    +0.12 / +0.11 dB on carphone / realshort (about 3 dB per doubling of
    the bits, where the ladder gains 0.8 from quality 6 to 7); 0.1 bought
    +0.10 / +0.05 dB more for +3.8% / +3.3% (twenty-eighth session,
    bench/RESULTS.md).
    Otherwise (12-bit tokens, model 2) the bits of the changes from one
    latent frame to the next, what the counting model pays for: a change
    of bit plane k is priced log2((1 - p_k) / p_k) bits, p_k
    being the share of plane k's bits that change in the unrefined chunk: a
    change is dear where the picture stands still. 0.15 was chosen on
    carphone, realshort and a test card (bench/RESULTS.md): against the flat
    price per change it replaced (0.3 per change), 4% fewer bits and +0.05 dB
    on carphone, 22% fewer and +0.06 dB on the card, 6% more and +0.09 dB on
    realshort; without a rate term a static picture costs 3.6 times the bits.
    0.25 since the fifteenth session's decoder, which spent more bits at
    0.15: against it, 4% to 7% fewer bits and +0.06 dB on carphone, 1% to
    4% fewer bits for 0.005 to 0.03 dB on realshort, 3% fewer for 0.006 dB
    on the card, 14% fewer for 0.04 dB on the sample clip (5 and 20 steps,
    bench/RESULTS.md).
    ssim: weight of 1 - SSIM of the decoded segment (the training's
    structural term), 0 by default: 0.05 raised MS-SSIM by 0.004 to 0.008
    for 3% to 9% more bits at the same PSNR and VMAF, which is better by
    MS-SSIM but worse by PSNR-Y and VMAF at equal bits (bench/RESULTS.md).
    coarse: weight of the coarse part of the squared error, its means over
    blocks of `COARSE_BLOCK` (`coarse_weighted_error`): 1 is the plain squared
    error; None (the default) is `COARSE_WEIGHT` where the chunks may carry
    luma and chroma layers, which correct that part afterwards, else 1
    (`with_layers`).
    extra, gain: after `steps` (where steps > 0), up to `extra` more steps,
    each taken only while the step before it lowered the segment's loss by
    more than the fraction `gain` of it (1 and 0.03 since the fortieth
    session: a third step where the second still gained more than 3%; the
    second lowers every segment's loss by 1% to 5%, and a third everywhere
    cost realshort 3% / 4% by MS-SSIM / VMAF; over the ladder 1% to 3% fewer
    bits by every metric on carphone and realshort, bench/RESULTS.md, "A
    third refinement step where the second still gained")."""

    steps: int = 0
    lr: float = 0.2
    rate: float | None = None
    ssim: float = 0.0
    coarse: float | None = None
    extra: int = 1
    gain: float = 0.03

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if self.extra < 0:
            raise ValueError(f"refine extra steps must be >= 0, got {self.extra}")
        if not 0 <= self.gain <= 1:
            raise ValueError(f"refine gain must be in [0, 1], got {self.gain}")
        if not self.lr > 0:
            raise ValueError(f"refine lr must be > 0, got {self.lr}")
        if self.rate is not None and not self.rate >= 0:
            raise ValueError(f"refine rate must be >= 0, got {self.rate}")
        if not self.ssim >= 0:
            raise ValueError(f"refine ssim weight must be >= 0, got {self.ssim}")
        if self.coarse is not None and not 0 <= self.coarse <= 1:
            raise ValueError(f"refine coarse weight must be in [0, 1], got {self.coarse}")


def default_refine(coded_pixels: int, torch_engine: bool = True) -> RefineConfig:
    """What the encoder refines by default: `DEFAULT_STEPS` for frames coded
    with at most `DEFAULT_MAX_PIXELS` pixels by torch; nothing above that
    or on onnxruntime (which has no gradients)."""
    return RefineConfig(steps=DEFAULT_STEPS if torch_engine and coded_pixels <= DEFAULT_MAX_PIXELS else 0)


def asked_refine(steps: int | None = None, rate: float | None = None, ssim: float = 0.0) -> RefineConfig | None:
    """The refinement options ask for (`encode --refine/--refine-rate/--refine-ssim`;
    steps None: `DEFAULT_STEPS`), or None where they ask nothing: the encoder's
    default, `default_refine`."""
    if steps is None and rate is None and not ssim:
        return None
    return RefineConfig(steps=DEFAULT_STEPS if steps is None else steps, rate=rate, ssim=ssim)


def with_layers(config: RefineConfig, layers: bool) -> RefineConfig:
    """`config` with its coarse weight resolved for chunks that may carry luma
    and chroma layers (`layers`) or not: where it is None, `COARSE_WEIGHT`
    or 1."""
    if config.coarse is not None:
        return config
    return dataclasses.replace(config, coarse=COARSE_WEIGHT if layers else 1.0)


def coarse_weighted_error(y: torch.Tensor, target: torch.Tensor, coarse: float) -> torch.Tensor:
    """Mean squared error of frames y against target (1, C, T, H, W), its
    coarse part weighted by `coarse`. Per channel the error e is the sum of
    two orthogonal parts, its means over blocks of `COARSE_BLOCK` (frames,
    pixels, pixels; smaller at the far edges) and the rest, so that
    |e|^2 = sum over blocks of |block| * mean^2 + |rest|^2; the first is the
    coarse part."""
    e = y - target
    loss = e.square().mean()
    if coarse == 1:
        return loss
    block = (min(COARSE_BLOCK[0], e.shape[2]), *COARSE_BLOCK[1:])
    sums = F.avg_pool3d(e, block, ceil_mode=True, divisor_override=1)
    sizes = F.avg_pool3d(torch.ones_like(e[:, :1]), block, ceil_mode=True, divisor_override=1)
    return loss - (1 - coarse) * (sums.square() / sizes).sum() / e.numel()


def encode_refined(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo, bits: int | None, hysteresis: float,
                   config: RefineConfig, size: tuple[int, int, int] | None = None,
                   segment_frames: int | None = None,
                   net: ContextNet | Sequence[ContextNet] | None = None,
                   decoded: list[np.ndarray] | None = None, latent: torch.Tensor | None = None) -> torch.Tensor:
    """`stateful.encode_chunk` with refinement: tokens (1, T', H', W') of one
    chunk (1, 3, T, H, W) whose first `size` = (T, H, W) frames are the clip
    (default: all of it); `segment_frames` as in `encode_chunk`; `net` and
    `decoded` as in `refine_tokens`; `latent`: the chunk's `encode_latent`
    where the caller has it already."""
    bits = tokenizer._check_bits(bits)
    z = encode_latent(tokenizer, video, segment_frames) if latent is None else latent
    if not config.steps:
        return latent_tokens(z, bits, hysteresis)
    return refine_tokens(tokenizer, tokenizer.pad(video), z, bits, hysteresis, config, size or video.shape[-3:],
                         segment_frames, net, decoded)


def change_prices(signs: torch.Tensor) -> torch.Tensor:
    """(1, K, 1, 1, 1): bits a change of each plane costs, log2((1 - p) / p),
    p = the share of the plane's bits (B, K, T, H, W) that change from one
    latent frame to the next (with half a change added to every plane, so a
    plane that never changes is dear but finite): the extra cost of coding
    "changed" rather than "kept" under a plane's own frequency, which is
    what the entropy coder's temporal contexts come to on average."""
    changed = (signs[:, :, 1:] != signs[:, :, :-1]).to(torch.float32)
    n = changed[:, 0].numel()
    p = (changed.sum(dim=(0, 2, 3, 4)) + 0.5) / (n + 1)
    return torch.log2((1 - p) / p).clamp_min(0).view(1, -1, 1, 1, 1)


def _changes(latent: torch.Tensor, previous: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """`bit_changes` of a segment's latent (dropped channels 0), counted from the
    last bits of the segment before (`previous`; none for a chunk's first
    segment), each plane's changes weighted by `weight` (0 for dropped planes)."""
    if previous is not None:
        latent = torch.cat([(previous.to(latent.dtype) * 2 - 1)[:, :, None], latent], dim=2)
    return bit_changes(latent, weight)


class PlaneStep:
    """Gradient descent on the latent the refinement searches, the gradient
    normalised per bit plane: each step moves x by lr * g / rms(g), the RMS
    over the plane's latent frames and positions (planes past `keep`, which
    the tokens drop, stay). A latent's bit flips where the step carries it
    across 0, so the coordinates the loss is most sensitive to move
    furthest; the planes' gradients differ in scale, hence a norm per plane.

    It replaced Adam (thirty-eighth session; bench/RESULTS.md, "Refinement
    steps normalised per bit plane"), whose first step moves every
    coordinate by lr whatever its gradient, so that latents near 0 flip on
    gradients that are mostly noise: at two steps, 6% to 9% fewer bits for the
    same PSNR-Y on carphone and realshort, at the same speed.
    """

    def __init__(self, x: torch.Tensor, lr: float, keep: torch.Tensor) -> None:
        self.x, self.lr, self.keep = x, lr, keep

    @torch.no_grad()
    def step(self) -> None:
        """One step along x.grad."""
        g = self.x.grad * self.keep
        rms = g.square().mean(dim=(0, 2, 3, 4), keepdim=True).sqrt().clamp_min(torch.finfo(g.dtype).tiny)
        self.x -= self.lr * g / rms


def refine_tokens(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo, z: torch.Tensor, bits: int, hysteresis: float,
                  config: RefineConfig, size: tuple[int, int, int] | None = None,
                  segment_frames: int | None = None,
                  net: ContextNet | Sequence[ContextNet] | None = None,
                  decoded: list[np.ndarray] | None = None) -> torch.Tensor:
    """Tokens (1, T', H', W') of `bits` bits for the padded chunk `video`
    (1, 3, T, H, W) in [-1, 1], starting from the encoder's latent z (1, K,
    T', H', W'). Per decoder segment: `config.steps` steps (`PlaneStep`; and up to
    `config.extra` more while each still gains `config.gain`) on the mean
    squared error of the decoded segment (over the first `size` = (T, H, W)
    of the chunk, the unpadded clip; its coarse part weighted by
    `config.coarse`, None: 1, `coarse_weighted_error`) plus `config.ssim` times its 1 - SSIM
    plus the rate weight (`RefineConfig.rate`) times the bits per pixel its
    tokens cost: what the context net `net` (of `bits`-bit tokens: the one
    entropy model 3 codes them with; or model 4's chain, the low bits' net
    and the nets above it, whose bits add up to `bits`) spends on them given the
    segments before (`NetRate`), or without a net what its changes cost
    (`change_prices`); each step's latent quantised with `hysteresis` as
    `Tokenizer.encode` quantises; the tokens of the step with the lowest
    loss are kept, so a segment's loss is never above the unrefined
    tokens' given the segments before it. `decoded`: a list that receives,
    segment by segment, the kept tokens' decoded frames, what the decoder
    makes of them, as uint8 frames (f, h, w, 3) (`video_to_frames`; a
    quarter of float32's memory, which for a 1080p chunk is 0.8 GB): the
    frames of the first `size` (T, H, W), where a last segment of padding
    may add one more."""
    t = tokenizer.temporal_factor
    n, h, w = size or video.shape[-3:]
    keep = (torch.arange(z.shape[1], device=z.device) < bits).view(1, -1, 1, 1, 1).to(z.dtype)
    nets = () if net is None else (net,) if isinstance(net, ContextNet) else tuple(net)
    if nets and sum(n.bits for n in nets) != bits:
        raise ValueError(f"context nets of {sum(n.bits for n in nets)}-bit tokens cannot price {bits}-bit tokens")
    default = CHANGE_RATE if not nets else NET_RATE if len(nets) == 1 else CHAIN_RATE
    rate = config.rate if config.rate is not None else default
    coarse = 1.0 if config.coarse is None else config.coarse
    net_rates = [NetRate(n).to(z.device) for n in nets] if rate else []
    price = change_prices(hysteresis_signs(z, hysteresis)) * keep if rate and not nets else None
    per = ((segment_frames or segment_frames_for(*video.shape[-2:])) - 1) // t
    steps = {True: DecoderStep(tokenizer, True), False: DecoderStep(tokenizer, False)}
    frozen = [p for p in tokenizer.decoder.parameters() if p.requires_grad]
    caches: list | None = None
    recent = None  # the bits (1, K, <= 2, H', W') of the last refined latent frames: hysteresis and net context
    out = []
    # reuse_freed_memory (where TOKCODEC_REUSE_MEMORY=1): each step allocates what the last one freed
    with _LOCKS.setdefault(tokenizer, threading.Lock()), torch.enable_grad(), reuse_freed_memory():
        try:
            for p in frozen:  # gradients for the latent only
                p.requires_grad_(False)
            tokenizer.decoder.checkpointing = video.shape[-2] * video.shape[-1] > CHECKPOINT_PIXELS
            for a, b in _segments(z.shape[2], 1 + per):
                f0 = 0 if a == 0 else 1 + t * (a - 1)  # the segment's first frame
                f1 = max(min(1 + t * (b - 1), n), f0 + 1)  # at least one frame (padding repeats the last)
                target = video[:, :, f0:f1, :h, :w]
                step = steps[caches is None]
                zs = z[:, :, a:b].detach().clone().requires_grad_(True)
                opt = PlaneStep(zs, config.lr, keep)
                best, best_loss, best_caches, best_y = None, float("inf"), None, None
                previous = None if recent is None else recent[:, :, -1]
                history = None if recent is None else recent[0].to(z.dtype) * 2 - 1
                most = config.steps + (config.extra if config.steps else 0)
                previous_loss = float("inf")
                for i in range(most + 1):
                    last = i == most  # only scored: no graph
                    hard = hysteresis_signs(zs.detach(), hysteresis, previous)
                    code = (hard.to(zs.dtype) * 2 - 1) * keep
                    with torch.set_grad_enabled(not last):
                        latent = zs + (code - zs).detach()  # straight through
                        y, *new_caches = step.forward_latent(latent, *(caches or []))
                        y = y[:, :, : f1 - f0, :h, :w].float()
                        loss = coarse_weighted_error(y, target, coarse)
                        if config.ssim:  # in float32: bfloat16 variances can cancel to <= 0 and give NaN
                            with torch.autocast(y.device.type, enabled=False):
                                loss = loss + config.ssim * (1 - structural_similarity(y, target))
                        if net_rates:
                            cost = sum(r.chunk_bits(latent[0], history, a) for r in net_rates)
                            loss = loss + rate * cost / target[0, 0].numel()
                        elif rate:
                            loss = loss + rate * _changes(latent, previous, price) / target[0, 0].numel()
                    if loss.item() < best_loss:  # the caches of its forward carry on to the next segment
                        best, best_loss, best_caches = hard, loss.item(), [c.detach() for c in new_caches]
                        best_y = y.detach() if decoded is not None else None
                    # Unless kept as the best, this step's frames and caches go now, not when the next
                    # forward replaces them: at 1080p that is a gigabyte more at the next step's peak.
                    del y, new_caches
                    if i >= config.steps and not loss.item() < previous_loss * (1 - config.gain):
                        break  # the extra steps: only while the last one still gained
                    previous_loss = loss.item()
                    if not last:
                        zs.grad = None
                        loss.backward()
                        opt.step()
                caches = best_caches
                if decoded is not None:
                    decoded.append(video_to_frames(best_y))  # 8-bit: a quarter of float32's memory
                recent = best[:, :, -2:] if recent is None else torch.cat([recent, best], dim=2)[:, :, -2:]
                out.append(bits_to_indices(best, dim=1))
                # A step that ended the loop early keeps its graph (the activations) through `loss`: free it
                # before the next segment's forward, with what else the segment held.
                del best, best_y, zs, opt, loss, latent
                release_kept_memory()  # where reuse_freed_memory keeps memory: one segment's worth at most
        finally:
            for p in frozen:
                p.requires_grad_(True)
            tokenizer.decoder.checkpointing = False
    tokens = torch.cat(out, dim=1)
    return tokens if bits == z.shape[1] else tokens & ((1 << bits) - 1)
