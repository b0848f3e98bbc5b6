"""Frame-by-frame encoding and decoding with cached causal context.

Every temporal convolution of the tokenizer is causal, so a chunk of
1 + t*k frames can be processed as it arrives: its first frame alone (one
latent frame), then every t frames (one more latent frame each), with each
convolution carrying the last kt - stride frames it has seen into the next
step. The result is the same token grid as encoding the whole chunk at once
(up to float rounding), at a latency of t frames.

`EncoderStep` / `DecoderStep` are those steps as plain modules, with the
caches as explicit tensors in and out: what ONNX export traces (one graph
for a chunk's first step, one for the steps after it). `StreamingEncoder` /
`StreamingDecoder` drive them frame by frame for Python callers;
`encode_chunk` / `decode_chunk` drive them segment by segment, so that a
long chunk is coded offline in the memory of a short one.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from tokcodec.codec.clips import FrameVideo
from tokcodec.codec.layers import AdaptiveGroupNorm, CausalConv3d, StreamSlot
from tokcodec.codec.lfq import DEFAULT_HYSTERESIS, bits_to_indices, hysteresis_signs, level_codes
from tokcodec.codec.model import Tokenizer
from tokcodec.codec.precision import network_precision, resolve_precision


_LOCKS: "weakref.WeakKeyDictionary[Tokenizer, threading.Lock]" = weakref.WeakKeyDictionary()


def _temporal_convs(module: nn.Module) -> list[CausalConv3d]:
    """The convolutions that need a cache (temporal kernel > 1), in a fixed order."""
    return [m for m in module.modules() if isinstance(m, CausalConv3d) and m.kt > 1]


class _Step(nn.Module):
    """Runs `part` with the caches of its temporal convolutions passed in and out."""

    def __init__(self, part: nn.Module, first: bool) -> None:
        super().__init__()
        self.part, self.first = part, first
        self.convs = _temporal_convs(part)

    def _run(self, x: torch.Tensor, caches: tuple[torch.Tensor, ...], *args) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.first and len(caches) != len(self.convs):
            raise ValueError(f"expected {len(self.convs)} caches, got {len(caches)}")
        slots = [StreamSlot(None if self.first else c) for c in (caches or [None] * len(self.convs))]
        for conv, slot in zip(self.convs, slots):
            conv.stream = slot
        try:
            out = self.part(x, *args)
        finally:
            for conv in self.convs:
                conv.stream = None
        return out, [s.cache for s in slots]


class EncoderStep(_Step):
    """frames (B, 3, n, H, W) in [-1, 1], H and W multiples of the spatial factor,
    n = 1 for a chunk's first step (`first=True`), else the temporal factor
    -> (latent z (B, K, 1, H', W') before quantisation, *new caches).

    The step stops before the quantiser so that the caller quantises with
    hysteresis against the previous step's bits (`hysteresis_signs`)."""

    def __init__(self, tokenizer: Tokenizer, first: bool) -> None:
        super().__init__(tokenizer.encoder, first)

    def forward(self, frames: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, new = self._run(frames, caches)
        return (z, *new)


class DecoderStep(_Step):
    """tokens (B, 1, H', W') of `bits` bits (one latent frame), *caches ->
    (frames (B, 3, n, H, W) in [-1, 1], *new caches); n = 1 on a chunk's first
    step, else the temporal factor."""

    def __init__(self, tokenizer: Tokenizer, first: bool, bits: int | None = None) -> None:
        super().__init__(tokenizer.decoder, first)
        self.total_bits = tokenizer.config.bits
        self.bits = bits or self.total_bits
        self.norms = [m for m in self.part.modules() if isinstance(m, AdaptiveGroupNorm)]

    def forward(self, tokens: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_latent(level_codes(tokens, self.bits, self.total_bits), *caches)

    def forward_latent(self, latent: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The same from the latent codes (B, K, 1, H', W'): +-1, 0 for dropped channels."""
        for m in [self.part, *self.norms]:
            m.continuing = not self.first
        try:
            video, new = self._run(latent, caches)
        finally:
            for m in [self.part, *self.norms]:
                m.continuing = False
        return (video.clamp(-1, 1), *new)


class TorchEngine:
    """Runs the streaming steps with torch (the reference for the ONNX engine).

    Both engines share one interface on numpy arrays: `encode_step(frames,
    caches)` with frames float32 (B, 3, n, H, W) in [-1, 1] and `caches`
    None for a chunk's first step, returning (latent z float32 (B, K, 1, H',
    W') before quantisation, caches); `decode_step(latent, caches)` with the
    latent float32 (B, K, 1, H', W') in {-1, 0, +1}, returning (frames
    float32, caches). The tokenizer may live on a GPU: the arrays cross to it
    and back, the caches stay there.

    `encode_frames` / `decode_frames` do the same on uint8 frames (n, H, W, 3),
    with the conversions of `to_float` / `to_uint8` done by torch where the
    tokenizer is: on a GPU, a quarter of the bytes cross and the host does
    no per-pixel work (an engine without them is fed through those numpy
    functions). `precision` ("fp32", "bf16" or "auto", `codec.precision`):
    what the networks compute in; the arrays stay float32.
    """

    def __init__(self, tokenizer: Tokenizer, precision: str = "fp32") -> None:
        self.tokenizer = tokenizer.eval()
        self.device = tokenizer.device
        self.precision = resolve_precision(precision, self.device)  # `codec.precision`
        # Steps set per-call caches on the shared modules: one step at a time per tokenizer.
        self.lock = _LOCKS.setdefault(tokenizer, threading.Lock())
        self.temporal_factor, self.spatial_factor = tokenizer.temporal_factor, tokenizer.spatial_factor
        self.bits = tokenizer.config.bits
        self._enc = {True: EncoderStep(tokenizer, True), False: EncoderStep(tokenizer, False)}
        self._dec = {True: DecoderStep(tokenizer, True), False: DecoderStep(tokenizer, False)}

    @torch.no_grad()
    def encode_step(self, frames: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        return self._encode(torch.from_numpy(frames).to(self.device), caches)

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(3, 0, 1, 2)[None]
        return self._encode(x.float() / 127.5 - 1, caches)  # to_float's float32 operations: the same values

    @torch.no_grad()
    def decode_step(self, latent: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        video, new = self._decode(latent, caches)
        return video.cpu().numpy(), new

    @torch.no_grad()
    def decode_frames(self, latent: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
        video, new = self._decode(latent, caches)
        # as to_uint8: round half to even, then clip
        frames = ((video[0] + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
        return frames.cpu().numpy(), new

    def _encode(self, x: torch.Tensor, caches: list | None) -> tuple[np.ndarray, list]:
        with self.lock, network_precision(self.precision, self.device):
            z, *new = self._enc[caches is None](x, *(caches or []))
        return z.float().cpu().numpy(), new

    def _decode(self, latent: np.ndarray, caches: list | None) -> tuple[torch.Tensor, list]:
        with self.lock, network_precision(self.precision, self.device):
            video, *new = self._dec[caches is None].forward_latent(torch.from_numpy(latent).to(self.device),
                                                                  *(caches or []))
        return video.float(), new


def latent_of(tokens: np.ndarray, bits: int, total_bits: int) -> np.ndarray:
    """Tokens (..., H', W') of `bits` bits -> latent float32 (..., total_bits, H', W')
    moved to axis -3: +-1 per kept bit, 0 for the channels a lower level drops."""
    shifts = np.arange(bits, dtype=np.int64).reshape(-1, 1, 1)
    codes = ((np.asarray(tokens, np.int64)[..., None, :, :] >> shifts) & 1).astype(np.float32) * 2 - 1
    if bits < total_bits:
        pad = np.zeros(codes.shape[:-3] + (total_bits - bits,) + codes.shape[-2:], np.float32)
        codes = np.concatenate([codes, pad], axis=-3)
    return codes


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames (n, H, W, 3) -> float32 (1, 3, n, H, W) in [-1, 1]."""
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2)[None], dtype=np.float32) / np.float32(127.5) - 1


def to_uint8(video: np.ndarray) -> np.ndarray:
    """float (1, 3, n, H, W) in [-1, 1] -> uint8 frames (n, H, W, 3), rounded as `video_to_frames`."""
    return np.clip(np.rint((video[0] + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def _encode_frames(engine, frames: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
    """An engine's encode step on uint8 frames, through its own conversion where it has one."""
    if hasattr(engine, "encode_frames"):
        return engine.encode_frames(frames, caches)
    return engine.encode_step(to_float(frames), caches)


def _decode_frames(engine, latent: np.ndarray, caches: list | None) -> tuple[np.ndarray, list]:
    """An engine's decode step to uint8 frames, through its own conversion where it has one."""
    if hasattr(engine, "decode_frames"):
        return engine.decode_frames(latent, caches)
    video, caches = engine.decode_step(latent, caches)
    return to_uint8(video), caches


def chunk_latent(engine, frames: np.ndarray) -> np.ndarray:
    """The encoder latent z (1, K, T', H', W') of one chunk's uint8 frames
    (1 + t k, H, W, 3) (H and W multiples of the spatial factor) by an
    engine's encode steps, first frame alone then t at a time, as
    `StreamingEncoder` runs them: `latent_tokens` of it at a threshold are
    the tokens that encoder gives at that threshold."""
    t = engine.temporal_factor
    if (len(frames) - 1) % t:
        raise ValueError(f"a chunk has 1 + {t}k frames, got {len(frames)}")
    caches, latents = None, []
    for a in range(-t + 1, len(frames), t):  # [0, 1), [1, 1 + t), ...
        z, caches = _encode_frames(engine, frames[max(a, 0) : a + t], caches)
        latents.append(z)
    return np.concatenate(latents, axis=2)


class StreamingEncoder:
    """Encode chunks of 1 + t*k frames as the frames arrive.

    `push(frame)` takes one uint8 frame (H, W, 3) (H and W multiples of the
    spatial factor: pad first) and returns the tokens (H', W') of the latent
    frame it completes, or None; after `chunk_frames` frames the next frame
    starts a new chunk, with no state carried over (chunks decode on their
    own). `engine` is a `TorchEngine` or `onnx_runtime.OnnxEngine`.
    `hysteresis` as in `Tokenizer.encode` (the same tokens as offline).
    """

    def __init__(self, engine, chunk_frames: int, bits: int | None = None,
                 hysteresis: float = DEFAULT_HYSTERESIS) -> None:
        t = engine.temporal_factor
        if chunk_frames < 1 or (chunk_frames - 1) % t:
            raise ValueError(f"chunk_frames must be 1 + {t}k")
        if hysteresis < 0:
            raise ValueError(f"hysteresis must be >= 0, got {hysteresis}")
        self.engine, self.t, self.chunk_frames = engine, t, chunk_frames
        self.mask = (1 << (bits or engine.bits)) - 1
        self.hysteresis = hysteresis
        self.reset()

    def reset(self) -> None:
        """Start a new chunk."""
        self.caches: list | None = None
        self.pending: list[np.ndarray] = []
        self.count = 0  # frames of the current chunk seen
        self.previous: torch.Tensor | None = None  # the last latent frame's bits (B, K, H', W')

    def _tokens(self, z: np.ndarray) -> np.ndarray:
        bits = hysteresis_signs(torch.from_numpy(z), self.hysteresis, self.previous)
        self.previous = bits[:, :, -1]
        return bits_to_indices(bits, dim=1).numpy()[0, 0] & self.mask

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        if self.count == self.chunk_frames:
            self.reset()
        self.pending.append(frame)
        self.count += 1
        if self.count > 1 and len(self.pending) < self.t:
            return None
        z, self.caches = _encode_frames(self.engine, np.stack(self.pending), self.caches)
        self.pending = []
        return self._tokens(z)

    def flush(self) -> np.ndarray | None:
        """End the chunk early (the video ended): the frames waiting for a full
        step are padded by repeating the last one, as offline encoding pads a
        clip, and their latent frame is returned (None if none was waiting)."""
        if not self.pending:
            self.reset()
            return None
        frames = self.pending + [self.pending[-1]] * (self.t - len(self.pending))
        z, _ = _encode_frames(self.engine, np.stack(frames), self.caches)
        tokens = self._tokens(z)
        self.reset()
        return tokens


class StreamingDecoder:
    """Decode a chunk's latent frames one at a time: `push(tokens (H', W'))`
    returns the uint8 frames (n, H, W, 3) it determines (1 for the chunk's
    first latent frame, then t each). `reset()` before each chunk."""

    def __init__(self, engine, bits: int | None = None) -> None:
        self.engine = engine
        self.bits = bits or engine.bits
        self.reset()

    def reset(self) -> None:
        self.caches: list | None = None

    def push(self, tokens: np.ndarray) -> np.ndarray:
        latent = latent_of(np.asarray(tokens)[None, None], self.bits, self.engine.bits)  # (1, 1, K, H', W')
        frames, self.caches = _decode_frames(self.engine, latent.transpose(0, 2, 1, 3, 4).copy(), self.caches)
        return frames

    def decode_chunk(self, grid: np.ndarray) -> Iterator[np.ndarray]:
        """Frames of a whole chunk's token grid (T', H', W'), one at a time."""
        self.reset()
        for t in range(grid.shape[0]):
            yield from self.push(grid[t])


# ---------------------------------------------------------------- long chunks offline

def segment_frames_for(height: int, width: int) -> int:
    """Frames per segment of `encode_chunk` / `decode_chunk` for a frame size.

    Measured on one core (bench/RESULTS.md, "Chunk length"): at 960x540 a
    33-frame chunk in segments of 5 frames peaks at 2.0 GB and codes in 36 s,
    in segments of 17 at 3.8 GB in 47 s (whole: 3.5 GB); at 320x240, where
    per-step overhead outweighs memory traffic, segments of 17 are faster.
    """
    return 17 if height * width <= 160_000 else 5


@torch.no_grad()
def encode_latent(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo, segment_frames: int | None = None) -> torch.Tensor:
    """The encoder's latent z (1, K, T', H', W') of one chunk (1, 3, T, H, W),
    padded as `Tokenizer.encode` pads it, run in segments of at most
    `segment_frames` frames (None: `segment_frames_for` the frame size) with
    the causal caches carried between them: the same latent (up to float
    rounding) in memory that does not grow with T."""
    return torch.cat([z for _, z in latent_segments(tokenizer, video, segment_frames)], dim=2)


def latent_segments(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo,
                    segment_frames: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """`encode_latent`'s segments as they are computed: (the frames encoded so far, the segment's
    latent frames, float32), so that a caller can stop after a chunk's first frames. `video`: a
    tensor, or a `FrameVideo` whose frames it converts a segment at a time."""
    t = tokenizer.temporal_factor
    segment_frames = segment_frames or segment_frames_for(*video.shape[-2:])
    if segment_frames < 1 + t or (segment_frames - 1) % t:
        raise ValueError(f"segment_frames must be 1 + {t}k with k >= 1, got {segment_frames}")
    video = tokenizer.pad(video)
    if video.shape[2] <= segment_frames:
        with torch.no_grad():
            # [:, :, :]: a FrameVideo's frames as a tensor. float32 under a bfloat16 autocast too.
            z = tokenizer.encoder(video[:, :, :]).float()
        yield video.shape[2], z
        return
    steps = {True: EncoderStep(tokenizer, True), False: EncoderStep(tokenizer, False)}
    caches: list | None = None
    for a, b in _segments(video.shape[2], segment_frames):
        # Not across the yield: the caller runs in between (grad mode and the steps' lock are the thread's).
        with torch.no_grad(), _LOCKS.setdefault(tokenizer, threading.Lock()):
            z, *caches = steps[caches is None](video[:, :, a:b], *(caches or []))
        yield b, z.float()


def encode_chunk(tokenizer: Tokenizer, video: torch.Tensor | FrameVideo, bits: int | None = None,
                 hysteresis: float = 0.0, segment_frames: int | None = None) -> torch.Tensor:
    """`Tokenizer.encode` of one chunk (1, 3, T, H, W) through `encode_latent`:
    the same tokens in memory that does not grow with T."""
    K = tokenizer._check_bits(bits)
    return latent_tokens(encode_latent(tokenizer, video, segment_frames), K, hysteresis)


def latent_tokens(z: torch.Tensor, bits: int, hysteresis: float = 0.0) -> torch.Tensor:
    """The tokens (B, T', H', W') of `bits` bits that latents z (B, K, T', H', W')
    quantise to with `hysteresis` (`hysteresis_signs`), as `Tokenizer.encode` does."""
    tokens = bits_to_indices(hysteresis_signs(z, hysteresis), dim=1)
    return tokens if bits == z.shape[1] else tokens & ((1 << bits) - 1)


def decode_chunk(tokenizer: Tokenizer, tokens: torch.Tensor, size: tuple[int, int, int] | None = None,
                 bits: int | None = None, segment_frames: int | None = None) -> torch.Tensor:
    """`Tokenizer.decode` of one chunk's tokens (1, T', H', W'), run in
    segments of at most `segment_frames` frames (see `encode_chunk`)."""
    return torch.cat(list(decoded_segments(tokenizer, tokens, size, bits, segment_frames)), dim=2)


def decoded_segments(tokenizer: Tokenizer, tokens: torch.Tensor, size: tuple[int, int, int] | None = None,
                     bits: int | None = None, segment_frames: int | None = None) -> Iterator[torch.Tensor]:
    """`decode_chunk`'s frames a segment at a time, as they are computed: float32 videos
    (1, 3, f, H, W) that follow each other, cropped to `size`. A caller that keeps each as uint8
    (`video_to_frames`) holds one segment in float, not the chunk (2.7 GB for 129 frames of
    1536x1152)."""
    t, s = tokenizer.temporal_factor, tokenizer.spatial_factor
    segment_frames = segment_frames or segment_frames_for(tokens.shape[-2] * s, tokens.shape[-1] * s)
    per = (segment_frames - 1) // t  # latent frames per segment after the first's 1 + per
    if tokens.dim() != 4 or tokens.shape[1] <= 1 + per:
        with torch.no_grad():
            video = tokenizer.decode(tokens, size, bits).float()  # float32 under a bfloat16 autocast too
        yield video
        return
    whole = (1 + t * (tokens.shape[1] - 1), tokens.shape[-2] * s, tokens.shape[-1] * s)  # decoded, padded
    if size is not None and any(a > b for a, b in zip(size, whole)):
        raise ValueError(f"size {size} is larger than the decoded clip {whole}")  # as `crop` says
    frames, height, width = size or whole
    with torch.no_grad():
        latent = tokenizer.latent_codes(tokens, bits)
    steps = {True: DecoderStep(tokenizer, True), False: DecoderStep(tokenizer, False)}
    caches: list | None = None
    done = 0  # frames yielded
    for a, b in _segments(tokens.shape[1], 1 + per):
        # Not across the yield, as in `latent_segments`.
        with torch.no_grad(), _LOCKS.setdefault(tokenizer, threading.Lock()):
            video, *caches = steps[caches is None].forward_latent(latent[:, :, a:b], *(caches or []))
        video = video[:, :, : frames - done, :height, :width].float()
        done += video.shape[2]
        if video.shape[2]:
            yield video


def _segments(n: int, first: int) -> Iterator[tuple[int, int]]:
    """[a, b) ranges covering 0..n: the first `first` long, then `first - 1`
    each (frames: 1 + t k, then t k; latent frames: 1 + k, then k)."""
    a, b = 0, min(n, first)
    while a < n:
        yield a, b
        a, b = b, min(n, b + first - 1)
