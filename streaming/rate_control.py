"""Encoder-side rate control: the hysteresis threshold chosen per chunk.

The encoder's hysteresis (`codec.lfq.hysteresis_signs`) keeps a weak
latent's bit from the previous latent frame: fewer bits for a little
distortion. How good that trade is depends on the content: on a static
picture it removes flicker that costs many bits for nothing, on camera
motion it drags stale bits along and costs more quality than the bits it
saves are worth (bench/RESULTS.md, "Encoder hysteresis"). So, like a
conventional encoder's mode decision, `choose_hysteresis` codes a chunk's
latent with a few thresholds and keeps the one with the best rate-distortion
score: PSNR minus `db_per_doubling` times log2 of the entropy-coded bits.
That exchange rate is the slope of the shipped ladder (about 0.5 to 1.8 dB
per doubling of the bits on the eval clips), so a threshold wins where it
buys quality more cheaply than a step of the ladder.

The bits are counted exactly (entropy coding costs next to nothing). The
PSNR either comes from decoding each candidate (`decode=True`: each costs
about one encode) or is estimated from the latent alone: a threshold moves
the kept latents away from the +-1 codes they are sent as, and the PSNR
moves by `latent_db` dB per dB of that squared distance (fitted on training
clips; bench/RESULTS.md, "The hysteresis chosen from the latent"), which
costs next to nothing. The decoder and the format do not change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokcodec.bitstream.context_net import ContextNet
from tokcodec.bitstream.luma_layer import MAX_CELLS, CellLayer, Layers, encode_layer, layer_shape, layers_size
from tokcodec.codec.clips import FrameVideo
from tokcodec.codec.luma_layer import apply, correction, fit, group_means, luma, planes
from tokcodec.codec.lfq import hysteresis_signs
from tokcodec.codec.model import Tokenizer

from .refine import RefineConfig, refine_tokens
from .stateful import decode_chunk, encode_latent, latent_tokens


@dataclass(frozen=True)
class HysteresisSearch:
    """thresholds: the hysteresis thresholds a chunk may be coded with, in
    increasing order; start: where the search begins (the fixed default);
    db_per_doubling: how many dB of PSNR a doubling of the chunk's bits is
    worth. The search climbs from `start` to a neighbouring threshold while
    that scores better, so it rates three to eight thresholds. decode: rate
    each by decoding the chunk (exact; about six times the encoding time);
    otherwise by the latent's estimate, `latent_db` dB of PSNR per dB of the
    kept latents' squared distance to their codes (next to free)."""

    thresholds: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    start: float = 0.2
    db_per_doubling: float = 1.0
    decode: bool = False
    latent_db: float = 0.7

    def __post_init__(self) -> None:
        hs = list(self.thresholds)
        if not hs or hs[0] < 0 or hs != sorted(set(hs)):
            raise ValueError(f"thresholds must be distinct, >= 0 and increasing, got {self.thresholds}")
        if self.start not in self.thresholds:
            raise ValueError(f"start {self.start} is not one of the thresholds {self.thresholds}")
        if not self.db_per_doubling >= 0:
            raise ValueError(f"db_per_doubling must be >= 0, got {self.db_per_doubling}")
        if not self.latent_db > 0:
            raise ValueError(f"latent_db must be > 0, got {self.latent_db}")


@dataclass(frozen=True)
class Choice:
    """The threshold a chunk is coded with, its tokens (1, T', H', W'), and
    every threshold tried with its (PSNR dB, payload bytes); the PSNR
    estimated from the latent is relative to the start threshold's."""

    threshold: float
    tokens: torch.Tensor
    tried: dict[float, tuple[float, int]]


def choose_hysteresis(tokenizer: Tokenizer, video: torch.Tensor | None, z: torch.Tensor, bits: int, frames: int,
                      payload_bytes: Callable[[np.ndarray], int], search: HysteresisSearch = HysteresisSearch()
                      ) -> Choice:
    """The best-scoring threshold of `search` for one chunk (1, 3, T, H, W) in
    [-1, 1] whose encoder latent is z, coded with `bits` bits per token:
    distortion over the chunk's first `frames` frames (the rest is padding),
    rate as `payload_bytes` of the token grid (T', H', W') (what the
    entropy coder writes). `video` is needed only to decode (`search.decode`)."""
    if search.decode and video is None:
        raise ValueError("choosing the hysteresis by decoding needs the chunk's video")
    tried: dict[float, tuple[float, int]] = {}
    tokens: dict[float, torch.Tensor] = {}
    if search.decode:
        target = video[:, :, :frames].float()

        def psnr_of(h: float) -> float:
            decoded = decode_chunk(tokenizer, tokens[h], tuple(video.shape[-3:]), bits)[:, :, :frames]
            mse = float(decoded.sub_(target).square_().mean())  # in place: no chunk-sized temporaries
            return math.inf if mse == 0 else 10 * math.log10(4 / mse)  # samples in [-1, 1]
    else:
        real = z[:, :bits, : 1 + -(-(frames - 1) // tokenizer.temporal_factor)]  # the real frames' latent frames
        start = code_distance(real, search.start)

        def psnr_of(h: float) -> float:
            return -10 * search.latent_db * math.log10(code_distance(real, h) / start)

    def score(h: float) -> float:
        if h not in tried:
            tokens[h] = latent_tokens(z, bits, h)
            tried[h] = (psnr_of(h), payload_bytes(tokens[h][0].numpy()))
        psnr, size = tried[h]
        return psnr - search.db_per_doubling * math.log2(8 * max(size, 1))

    hs = search.thresholds
    i = hs.index(search.start)
    while True:
        best = max((j for j in (i - 1, i, i + 1) if 0 <= j < len(hs)), key=lambda j: score(hs[j]))
        if best == i:
            return Choice(hs[i], tokens[hs[i]], tried)
        i = best


def code_distance(z: torch.Tensor, threshold: float) -> float:
    """The squared distance of latents z (B, K, T', H', W') to the +-1 codes
    they quantise to with `threshold` (`hysteresis_signs`); at least a tiny
    positive number, so that ratios of it are defined."""
    codes = hysteresis_signs(z, threshold).to(z.dtype).mul_(2).sub_(1)
    return max(float(codes.sub_(z).square_().sum()), 1e-12)


def encode_searched(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo, bits: int, size: tuple[int, int, int],
                    payload_bytes: Callable[[np.ndarray], int], search: HysteresisSearch = HysteresisSearch(),
                    refine: RefineConfig = RefineConfig(),
                    net: ContextNet | Sequence[ContextNet] | None = None,
                    decoded: list[np.ndarray] | None = None, latent: torch.Tensor | None = None) -> Choice:
    """`refine.encode_refined` of one chunk (1, 3, T, H, W) whose first `size`
    = (T, H, W) frames are the clip, with the hysteresis threshold chosen by
    `choose_hysteresis` on the unrefined tokens (refinement then searches
    with that threshold, pricing bits by `net` as `refine_tokens` does;
    `Choice.tried` scores the unrefined tokens; `decoded` as in `refine_tokens`;
    `latent`: the chunk's `encode_latent` where the caller has it already)."""
    bits = tokenizer._check_bits(bits)
    z = encode_latent(tokenizer, video) if latent is None else latent
    clip = video[:, :, :, : size[1], : size[2]] if search.decode else None  # (a FrameVideo converts it all)
    choice = choose_hysteresis(tokenizer, clip, z, bits, size[0], payload_bytes, search)
    if not refine.steps:
        return choice
    tokens = refine_tokens(tokenizer, tokenizer.pad(video), z, bits, choice.threshold, refine, size, net=net,
                           decoded=decoded)
    return Choice(choice.threshold, tokens, choice.tried)


# The coarse layers' cells a chunk may use ((block px, frames, step)); the encoder keeps the
# best-scoring combination of one or none per plane (bench/RESULTS.md, "A coarse luma layer",
# "Coarse chroma layers" and "Coarse layers chosen together, fitted, from more cells").
# Longer groups and coarser steps serve low points and steady pictures. Chroma only in large
# cells: they fix a region's tint, what shows, for 1% to 7% of the default point's bytes; finer
# ones score too, but cost 16-52% more bytes at low points.
LAYER_CELLS = ((32, 4, 4), (16, 4, 4), (8, 4, 4), (16, 16, 4), (8, 16, 4), (8, 8, 8), (8, 4, 8))
CHROMA_CELLS = ((64, 4, 4), (32, 4, 4))
# A chroma plane's PSNR counts for 1/6 of luma's, as in PSNR-YCbCr's 6:1:1 weighting.
CHROMA_WEIGHT = 1 / 6
# The layers may take at most this share of the chunk's token bytes. Scored alone, a low point's
# chunk can buy a layer of several times its tokens (realshort quality 0: 4.4 KB on 1.1 KB),
# which turns it into a higher point, larger than quality 1's: the ladder must rise with N.
MAX_LAYER_SHARE = 1.0
# ... but always this many bytes: a tiny chunk's tokens (32 bytes for 5 frames of 96x64 at
# quality 0) weigh less than the file's own header, and capped at them it lost its chroma
# layers (Cr 27.7 -> 15.3 dB on such a clip).
LAYER_ALLOWANCE = 256
# dB of PSNR a doubling of a chunk's bits is worth to the layers: a little above the hysteresis
# search's 1, nearer the ladder's own slope (0.4 to 2.6 dB per doubling between the eval clips'
# points). At 1.25 against 1 the eval ladder's BD-rate PSNR-Y / MS-SSIM / VMAF moved -1.1 / -1.0 /
# -0.3% on carphone, +0.0 / +1.1 / +0.7% on realshort, -2.5 / -3.5 / -2.8% on the card; 1.5 and 2
# lost more on realshort (bench/RESULTS.md, "The layers' exchange rate").
LAYER_DB_PER_DOUBLING = 1.25


def _psnr(mse: float) -> float:
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def fit_layers(source: np.ndarray, decoded: np.ndarray, matrix: int,
               cells: Sequence[Sequence[tuple[int, int, int]]]) -> list[list[tuple[CellLayer | None, float]]]:
    """For each of the first len(`cells`) planes (Y', Cb, Cr) of one chunk, no layer and its
    layer of each of its `cells` (block px, frames, step) fitted to the chunk (`fit`), each with
    the plane's PSNR with it added (an estimate for Y', whose sum is clipped to 0..255 where the
    decoder would clip R, G and B). One pass over the chunk, a few groups of frames at a time: a
    1080p chunk's float planes, held whole, would take gigabytes. `source`, `decoded`: uint8
    RGB (n, H, W, 3), as in `choose_layers`."""
    n, H, W = source.shape[:3]
    span = math.lcm(16, *(g for plane in cells for _, g, _ in plane))  # whole groups of every length
    values: list[list[list[np.ndarray]]] = [[[] for _ in plane] for plane in cells]
    errors = [[0.0] * (1 + len(plane)) for plane in cells]  # squared error with none, then each cell's
    convert = planes if len(cells) > 1 else lambda frames, matrix: (luma(frames, matrix),)
    for first in range(0, n, span):
        frames = slice(first, first + span)
        for plane, (target, base) in enumerate(zip(convert(source[frames], matrix), convert(decoded[frames], matrix))):
            error = target - base
            errors[plane][0] += float(np.square(error).sum())
            means = {g: group_means(error, g) for g in {g for _, g, _ in cells[plane]}}  # once per group length
            for i, (block, group, step) in enumerate(cells[plane]):
                part = fit(means[group], block, group, step)  # the layer's groups in these frames
                values[plane][i].append(part.values)
                for g, up in enumerate(correction(part, H, W)):
                    out = base[g * group : (g + 1) * group] + up
                    if plane == 0:
                        np.clip(out, 0, 255, out=out)
                    errors[plane][1 + i] += float(np.square(out - target[g * group : (g + 1) * group]).sum())
    return [[(None, _psnr(errors[plane][0] / (n * H * W)))]
            + [(CellLayer(block, group, step, np.concatenate(values[plane][i])),
                _psnr(errors[plane][1 + i] / (n * H * W))) for i, (block, group, step) in enumerate(plane_cells)]
            for plane, plane_cells in enumerate(cells)]


def choose_layers(source: np.ndarray, decoded: np.ndarray, token_bytes: int, matrix: int = 0,
                  luma_layer: bool = True, chroma: bool = False,
                  cells: Sequence[tuple[int, int, int]] = LAYER_CELLS,
                  chroma_cells: Sequence[tuple[int, int, int]] = CHROMA_CELLS,
                  db_per_doubling: float = LAYER_DB_PER_DOUBLING,
                  chroma_weight: float = CHROMA_WEIGHT, max_share: float = MAX_LAYER_SHARE,
                  allowance: int = LAYER_ALLOWANCE) -> Layers:
    """The coarse layers (`codec.luma_layer`) that score best for one chunk:
    each plane's layer from its `cells` or none, the three planes chosen
    together. Score = Y' PSNR + `chroma_weight` x (Cb PSNR + Cr PSNR) minus
    `db_per_doubling` times log2 of the chunk's bits (`token_bytes` + the
    layers' payload, `encode_layers`). `luma_layer`, `chroma`: whether Y', and Cb and Cr, may have
    one (`chroma`: the file's chunks may carry Cb and Cr layers, whose
    payload then has 8 bytes of sizes: chosen together, the planes share
    them). The layers' payload may be at most `max_share` times
    `token_bytes`, or `allowance` bytes where that is more. Y' candidates are
    scored on the Y' plane, and the winner's PSNR then checked on the RGB
    frames the decoder writes (R, G and B clipped), choosing again until
    the winner's is. `source`, `decoded`: the chunk's real frames, uint8 RGB
    (n, H, W, 3) at the displayed size, as read and as the decoder writes them."""
    n, H, W = source.shape[:3]

    def allowed(cells: Sequence[tuple[int, int, int]]) -> tuple[tuple[int, int, int], ...]:
        return tuple(c for c in cells if math.prod(layer_shape(n, H, W, c[0], c[1])) <= MAX_CELLS)

    def exact_psnr(layer: CellLayer) -> float:
        """Y' PSNR of the RGB frames the decoder writes with the Y' `layer` (clipped and
        rounded per channel), a few frames at a time."""
        up, total = (correction(layer, H, W), None, None), 0.0
        for first in range(0, n, 8):
            out = apply(decoded[first : first + 8], Layers(y=layer), first, up, matrix)
            total += float(np.square(luma(out, matrix) - luma(source[first : first + 8], matrix)).sum())
        return _psnr(total / (n * H * W))

    # Each candidate's quality and bytes once; the planes' qualities add, and so do their bytes.
    fitted = fit_layers(source, decoded, matrix, (allowed(cells) if luma_layer else (),
                                                  *((allowed(chroma_cells),) * 2 if chroma else ())))
    options: list[list[tuple[CellLayer | None, float, int]]] = [
        [(c, psnr * (1 if plane == 0 else chroma_weight), len(encode_layer(c))) for c, psnr in plane_layers]
        for plane, plane_layers in enumerate(fitted)]
    options += [[(None, 0.0, 0)] for _ in range(3 - len(options))]  # without chroma layers Cb and Cr have no say

    def score(combo: tuple[int, int, int]) -> float:
        chosen = [options[plane][i] for plane, i in enumerate(combo)]
        layer_bytes = layers_size(tuple(b for _, _, b in chosen), chroma)
        if layer_bytes > max(max_share * token_bytes, allowance):
            return -math.inf
        return sum(q for _, q, _ in chosen) - db_per_doubling * math.log2(8 * max(token_bytes + layer_bytes, 1))

    # The Y' estimate misses where the decoder clips R, G or B (saturated colours): until the best
    # combination's Y' layer has been measured on the RGB frames, measure it and choose again
    # (an RGB pass or two a chunk, not one per candidate).
    exact = {0}  # no Y' layer: measured on the decoded frames' own Y'
    while True:
        best = max(itertools.product(*(range(len(o)) for o in options)), key=score)  # no layers always scores
        if best[0] in exact:
            return Layers(*(options[plane][i][0] for plane, i in enumerate(best)))
        layer, _, size = options[0][best[0]]
        options[0][best[0]] = (layer, exact_psnr(layer), size)
        exact.add(best[0])
