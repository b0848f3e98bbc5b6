"""Video files <-> .tok files: the codec's encode, decode and info.

This is where the parts meet: codec/ turns pixels into tokens and back,
bitstream/ turns tokens into bytes and back. Everything streams one chunk
(one clip) at a time, and every output is written under a temporary name and
renamed only when complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tokcodec.bitstream.container import (CHROMA_LAYERS, LUMA_LAYER, MAX_SIZE, AudioPacket, AudioTrack, Header,
                                          TokError, TokReader, TokWriter, short_chunks)
from tokcodec.bitstream.entropy import EntropyParams, EntropyPrior
from tokcodec.bitstream.luma_layer import Layers
from tokcodec.codec import Tokenizer, fingerprint, load_tokenizer
from tokcodec.codec.clips import FrameVideo, coded_size, resize_frames, video_to_frames
from tokcodec.codec.luma_layer import apply as apply_layers
from tokcodec.codec.io import (
    AudioPacketData,
    AudioStreamInfo,
    NOMINAL,
    LumaRange,
    SceneCuts,
    VideoWriter,
    audio_packets_decodable,
    audio_stream_info,
    choose_luma_range,
    iter_audio_packets,
    probe,
    read_clips,
    source_luma,
)
from tokcodec.codec.precision import network_precision, resolve_precision
from tokcodec.codec.sharpen import DEFAULT_SHARPEN, NO_SHARPEN, Sharpen, sharpen as sharpen_frames
from tokcodec.memory import release_kept_memory, reuse_freed_memory
from tokcodec.streaming.rate_control import HysteresisSearch, choose_hysteresis, choose_layers, encode_searched
from tokcodec.streaming.refine import RefineConfig, default_refine, encode_refined, with_layers
from tokcodec.streaming.chunk_split import ChunkSplit
from tokcodec.streaming.stateful import (StreamingDecoder, StreamingEncoder, chunk_latent, decoded_segments,
                                         latent_segments, latent_tokens)

from . import AUTO_HYSTERESIS, DEFAULT_ENCODE_HYSTERESIS, DEFAULT_LONGEST_CHUNK, HEADROOM
from .api import check_output
from .ladder import MAX_SCALE, MIN_SCALE, model_ladder
from .priors import model_prior, prior_for
from .progress import Progress


@dataclass
class EncodeReport:
    """What `encode_file` wrote."""

    output: str
    frames: int
    chunks: int
    bytes: int
    token_bytes: int
    tokens: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    audio_bytes: int = 0  # part of `bytes` that is the source's audio
    quality: int = 0  # the point of the rate ladder
    bits: int = 0  # bits per token coded
    coded_size: tuple[int, int] = (0, 0)  # (width, height) the tokenizer saw
    thresholds: list[float] = field(default_factory=list)  # the hysteresis each chunk was coded with
    refine_steps: int = 0  # the refinement's steps per segment (`refine.default_refine` unless asked)
    luma_range: LumaRange = NOMINAL  # the Y' span coded (`codec.luma_range`): wider keeps super-whites
    layer_bytes: int = 0  # part of `bytes` that is the coarse layers (`luma_layer`, `chroma_layer`)
    layers: int = 0  # chunks that carry any
    sharpen: Sharpen = NO_SHARPEN  # the unsharp mask every decoder applies (`codec.sharpen`)
    cuts: int = 0  # chunks that ended early because a scene cut started the next
    splits: int = 0  # chunks that ended at a split point (`ChunkSplit.points`) because the picture moves


@dataclass
class DecodeReport:
    """What `decode_file` wrote."""

    output: str
    start: int
    frames: int
    chunks: int
    seconds: float


@dataclass
class TokenChunk:
    """Tokens of one chunk and the frames they stand for."""

    first_frame: int
    frames: int
    tokens: np.ndarray  # int64 (T', H', W')

    @property
    def frame_range(self) -> range:
        return range(self.first_frame, self.first_frame + self.frames)


# ---------------------------------------------------------------- encode


def encode_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: Tokenizer | str | None = None,
    quality: int | None = None,
    chunk_frames: int = DEFAULT_LONGEST_CHUNK,
    max_frames: int | None = None,
    entropy: EntropyParams | None = None,
    hysteresis: float | Literal["auto", "auto-decode"] | HysteresisSearch | None = None,
    refine: RefineConfig | None = None,
    scale: float | None = None,
    level: int | None = None,
    force: bool = False,
    quiet: bool = True,
    onnx: str | os.PathLike | None = None,
    precision: str = "auto",
    headroom: str = "auto",
    luma_layer: bool = True,
    chroma_layer: bool = True,
    sharpen: float | Sharpen | None = None,
    scene_cuts: bool = True,
    split: ChunkSplit | None = ChunkSplit(),
) -> EncodeReport:
    """Encode a video file (or its first `max_frames` frames) to a .tok file.

    Each chunk of up to `chunk_frames` frames (1 + 4k for the default model) is
    tokenized and coded on its own, so it can be decoded without the others
    (in segments of a few frames with the causal caches carried over, so
    memory does not grow with the chunk). With `split` (the default: 33) a
    chunk ends after `split.frames` frames, or a further multiple of
    `split.frames - 1`, where its picture moves (`streaming.chunk_split`):
    a steady picture keeps long chunks, a moving one gets short ones. With `scene_cuts` (the default) a
    chunk also ends early where a scene cut (`codec.scene_cuts`: FFmpeg's
    scdet) starts the next, which codes the new scene from its own first
    frame (a .tok 1.10 file; `scene_cuts=False`: one a 1.9 reader can read).
    The source's audio packets are stored alongside. `quality` picks a point
    of the model's rate ladder (0 = lowest rate; None = the model's default;
    `tokcodec.ladder`): a coding scale and a number of bits per token.
    `scale` and `level` override the point's scale and LFQ level.
    `hysteresis`: latents smaller than it keep their previous latent frame's
    bit (`Tokenizer.encode`); 0 is plain sign quantisation. "auto" (the
    default, None; or a `streaming.rate_control.HysteresisSearch`): a
    threshold chosen per chunk by its bits and the distortion the latent
    predicts (`choose_hysteresis`: about as fast as a fixed threshold);
    "auto-decode" by decoding each candidate (three to eight decodes a chunk:
    about a sixth of the speed).
    `refine` with steps > 0: search, per segment, for the tokens the decoder
    reconstructs best (`streaming.refine.RefineConfig`): better quality and
    fewer bits, slower encoding. None (the default): `refine.default_refine`,
    `DEFAULT_STEPS` (two, and a third in segments where the second still
    gained 3%) with torch for frames coded at up to 1080p's pixel count, none
    above or with `onnx`; `RefineConfig()`: none. Its coarse weight, where
    None, is resolved for the layers asked (`refine.with_layers`).
    `scale`: code the frames resampled by this factor (bicubic); the decoder
    resamples its output back to the source size. Above 1 the token grid is
    finer than the model's: more bits and more compute, better quality
    (bench/RESULTS.md, "The rate ladder").
    `onnx`: a folder from `tokcodec export-onnx` of the model, or "auto" (an
    export kept in `cache_dir()`, made on first use): encode with
    onnxruntime, frame by frame (the 'stream' extra; faster from about
    640x272 up; no refinement, which needs torch's gradients).
    `precision`: what torch's networks compute in, "fp32", "bf16" or "auto"
    (bfloat16 where the hardware has it, `codec.precision`: about twice the
    speed on such a CPU; the tokens can differ from float32's where a latent
    is near its threshold, for the same bits and quality).
    `headroom`: what becomes of Y' codes above 235 or below 16 in a
    limited-range source (`codec.luma_range`). "auto": kept (the coded span
    widened to 255 or 0, recorded in the header) where clipping them would
    cost more than 38 dB of Y' PSNR in frames sampled over the part encoded;
    "keep": always widened to 0..255; "clip": clipped as players show them.
    `luma_layer`: send each chunk's coarse luma layer where it scores better
    than none (`streaming.rate_control.choose_layers`: the decoded chunk's
    luma error over cells of 8 to 32 pixels and 4 to 16 frames; on the eval clips
    0% to 27% of the bytes for 0.3 to 1.3 dB PSNR-Y, bench/RESULTS.md),
    measured on the refinement's last decode, or on one more decode where
    the chunk is not refined. `chroma_layer`: the same for Cb and Cr (cells
    of 32 or 64 pixels; a plane's PSNR counted 1/6 of luma's, as PSNR-YCbCr
    6:1:1 does: +1 to +7 dB Cb and Cr PSNR for 1% to 7% more bytes at the
    default point on the eval clips, bench/RESULTS.md "Coarse chroma layers"). Without either, a
    file a .tok 1.6 reader can read; with `luma_layer` only, one a 1.7 reader can.
    `split`: a chunk of more than `split.frames` frames ends after them, or
    after a further multiple of `split.frames - 1` (`ChunkSplit.points`),
    where its picture moves (`streaming.chunk_split.ChunkSplit`: where its
    first latent frame costs less than `split.ratio` times the later ones
    since the last point);
    None: every chunk is `chunk_frames` long but at scene cuts and the end
    (and so where `chunk_frames` is not longer than `split.frames`).
    `sharpen`: the unsharp mask of the decoded luma the file asks every
    decoder to apply (`codec.sharpen`), as an amount at the default sigma or a
    `Sharpen`; None: `DEFAULT_SHARPEN` (amount 0.5, sigma 1.5, threshold 2:
    about -0.06 dB PSNR-Y for +3.9 VMAF and +2.8 VMAF NEG on the training
    clips); 0: none, the
    frames the squared-error search chose (what a .tok 1.8 reader shows of
    any file: it skips the field).
    """
    check_output(output, force)
    sharpen = DEFAULT_SHARPEN if sharpen is None else sharpen if isinstance(sharpen, Sharpen) else \
        Sharpen.of_amount(sharpen)
    if headroom not in HEADROOM:
        raise ValueError(f"--headroom must be one of {', '.join(HEADROOM)}, got {headroom!r}")
    hysteresis = DEFAULT_ENCODE_HYSTERESIS if hysteresis is None else hysteresis
    if hysteresis in AUTO_HYSTERESIS:
        hysteresis = HysteresisSearch(decode=hysteresis == "auto-decode")
    search = hysteresis if isinstance(hysteresis, HysteresisSearch) else None
    if search is None and not (isinstance(hysteresis, (int, float)) and hysteresis >= 0):
        raise ValueError(f"--hysteresis must be a number >= 0, 'auto' or 'auto-decode', got {hysteresis!r}")
    tokenizer = model if isinstance(model, Tokenizer) else load_tokenizer(model)
    precision = _check_precision(precision, onnx, tokenizer)
    engine = None
    if onnx is not None:
        if refine is not None and refine.steps:
            raise ValueError("--onnx cannot refine (the search needs torch): leave out one of them")
        if search is not None and search.decode:
            raise ValueError("--onnx cannot choose the hysteresis by decoding (auto-decode decodes with torch): "
                             "use --hysteresis auto or leave out --onnx")
        engine = onnx_engine(onnx, tokenizer.config.name, fingerprint(tokenizer), tokenizer)
    ladder = model_ladder(tokenizer.config)
    ladder.point(quality)  # refuses a point or level the model lacks before any work
    if level is not None and not 0 <= level < len(tokenizer.config.lfq.level_bits):
        raise ValueError(f"--level {level} is not a level of {tokenizer.config.name} "
                         f"(0..{len(tokenizer.config.lfq.level_bits) - 1}, see `tokcodec models`)")
    if scale is not None and not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"--scale must be in {MIN_SCALE}..{MAX_SCALE}, got {scale}")
    check_chunk_frames(tokenizer, chunk_frames)
    if split is not None:
        check_chunk_frames(tokenizer, split.frames, "--chunk-split")
        if split.frames >= chunk_frames:
            split = None  # no chunk is longer
    t = tokenizer.temporal_factor
    info = probe(source)
    audio_info = audio_stream_info(source)
    warnings = []
    if audio_info is not None and not audio_packets_decodable(audio_info):
        warnings.append(f"{source}: {audio_info.codec} audio cannot be stored in a .tok; the output has no audio")
        audio_info = None
    point = ladder.for_frame(quality, info.width, info.height)
    scale = point.scale if scale is None else scale
    level = point.level if level is None else level
    coded = coded_size(info.width, info.height, scale)
    if max(coded) > MAX_SIZE:
        raise ValueError(f"--scale {scale} makes {info.width}x{info.height} frames {coded[0]}x{coded[1]}, "
                         f"larger than the {MAX_SIZE} pixels a .tok allows")
    span = source_span(source, headroom, None if max_frames is None else max_frames / info.fps)
    header, prior = new_header(tokenizer, info.width, info.height, info.fps, chunk_frames, quality, entropy,
                               _audio_track(audio_info), coded, level, span, luma_layer, chroma_layer, sharpen)
    cw, ch, bits = *header.coded_size, header.bits
    refine = with_layers(default_refine(cw * ch, engine is None) if refine is None else refine,
                         luma_layer and chroma_layer)
    net = prior.nets if prior is not None and header.entropy.model_id in (3, 4) else None  # refinement prices bits by them
    start = time.monotonic()
    total = info.frames if max_frames is None else min(max_frames, info.frames or max_frames)
    audio = _AudioSplitter(iter_audio_packets(source) if audio_info else iter(()), audio_info, info.fps)
    tokens = layered = splits = 0
    thresholds = []
    # reuse_freed_memory: where TOKCODEC_REUSE_MEMORY=1, faster and more memory (tokcodec.memory)
    with Progress(total, "encode", quiet=quiet) as progress, TokWriter(output, header, prior=prior) as writer, \
            reuse_freed_memory():
        clips = read_clips(source, chunk_frames, t, max_frames, span, SceneCuts() if scene_cuts else None)
        clip = next(clips, None)
        while clip is not None:
            # Both engines see the same 8-bit resampled frames, so they give the same tokens.
            frames = resize_frames(clip.frames, ch, cw)
            latent = None  # the chunk's encoder latent, where weighing a split computed it
            points = [p for p in split.points(chunk_frames) if p < clip.valid] if split is not None else []
            if points:
                threshold = search.start if search else hysteresis
                latent, kept = _split_latent(tokenizer, engine, frames, points, precision,
                                             lambda z: split.ends(latent_tokens(z, bits, threshold)[0].numpy(),
                                                                  writer.payload_size, split.window(t)))
                if kept:
                    clip = clips.give_back(clip, kept)
                    splits += 1
                    frames = frames[: len(clip.frames)].copy()  # a copy, so that the later frames' memory goes
            refined: list[np.ndarray] | None = [] if header.luma_layer and refine.steps else None
            if engine is None:
                video = FrameVideo(frames)  # torch's input, as float a segment at a time
                with network_precision(precision, tokenizer.device):
                    if search is None:
                        codes = encode_refined(tokenizer, video, bits, hysteresis, refine, (clip.valid, ch, cw),
                                               net=net, decoded=refined, latent=latent)
                    else:
                        choice = encode_searched(tokenizer, video, bits, (clip.valid, ch, cw),
                                                 writer.payload_size, search, refine, net, refined, latent)
                        codes = choice.tokens
                codes = codes[0].numpy()
            elif search is None:
                codes = (onnx_encode_chunk(engine, frames, bits, hysteresis, tokenizer.spatial_factor)
                         if latent is None else latent_tokens(latent, bits, hysteresis)[0].numpy())
            else:
                z = (torch.from_numpy(chunk_latent(engine, pad_frames(frames, tokenizer.spatial_factor)))
                     if latent is None else latent)
                choice = choose_hysteresis(tokenizer, None, z, bits, clip.valid, writer.payload_size, search)
                codes = choice.tokens[0].numpy()
            thresholds.append(hysteresis if search is None else choice.threshold)
            end = clip.start + clip.valid
            following = next(clips, None)  # read after coding: the coding may hand frames back to it
            last = following is None
            # The last chunk of the whole source also takes the audio that outlasts the video.
            whole = last and (max_frames is None or end < max_frames)
            payload = writer.token_payload(codes)
            layers = Layers()
            if header.luma_layer:  # measured on the frames the decoder will write (the refinement's last decode)
                decoded = (_joined(_drained(refined), clip.valid, header.height, header.width) if refined
                           else decode_chunk(tokenizer, header, codes, clip.valid, engine, precision))
                chroma = header.luma_layer == CHROMA_LAYERS
                layers = choose_layers(clip.frames[: clip.valid], decoded, len(payload), header.luma_matrix,
                                       luma_layer, chroma)
                layered += bool(layers)
            writer.write_chunk(clip.valid, codes, audio.until(None if whole else end), layers, payload)
            tokens += codes.size
            progress.update(clip.valid)
            clip = following
            release_kept_memory()  # where reuse_freed_memory keeps memory: one chunk's worth at most
        if not writer.entries:
            raise ValueError(f"{source}: no frames could be decoded")
    return EncodeReport(str(output), writer.frames, len(writer.entries), Path(output).stat().st_size,
                        writer.payload_bytes, tokens, time.monotonic() - start, warnings, writer.audio_bytes,
                        header.quality, bits, (cw, ch), thresholds, refine.steps, span, writer.layer_bytes, layered,
                        sharpen, short_chunks(writer.entries, chunk_frames) - splits, splits)


def check_chunk_frames(tokenizer: Tokenizer, chunk_frames: int, option: str = "--chunk-frames") -> None:
    """Raise a one-line ValueError unless `chunk_frames` is 1 + tk for `tokenizer`'s temporal factor t
    (a chunk's first frame alone, then whole latent frames)."""
    t = tokenizer.temporal_factor
    if chunk_frames < 1 or (chunk_frames - 1) % t:
        raise ValueError(f"{option} must be 1 + {t}k for model {tokenizer.config.name}, got {chunk_frames}")


def source_span(source: str | os.PathLike, headroom: str = "auto", until: float | None = None) -> LumaRange:
    """The Y' span to code `source` (its first `until` seconds; None: all of
    it) in (`encode_file`'s `headroom`), from frames at its start and spread
    over it (`codec.io.source_luma`)."""
    found = None if headroom == "clip" else source_luma(source, until=until)
    if found is None:
        return NOMINAL
    y, matrix = found
    return choose_luma_range(y, matrix) if headroom == "auto" else LumaRange(0, 255, matrix)


def header_span(header: Header) -> LumaRange:
    """The Y' span a .tok file's tokens code (nominal before version 1.5)."""
    return LumaRange.from_codes(header.luma_black, header.luma_white, header.luma_matrix)


def decoder_sharpen(header: Header, sharpen: bool | float | Sharpen = True) -> Sharpen:
    """The unsharp mask a decoder applies to a file: the one it asks for (True), none (False),
    the file's at another amount (a float: its sigma and threshold, the default mask's where
    the file asks for none; 0: none), or `sharpen` itself."""
    if isinstance(sharpen, Sharpen):
        return sharpen
    if isinstance(sharpen, bool):
        return header_sharpen(header) if sharpen else NO_SHARPEN
    amount = Sharpen.of_amount(sharpen).amount  # checked and rounded to 1/16
    return replace(header_sharpen(header) or DEFAULT_SHARPEN, amount=amount) if amount else NO_SHARPEN


def header_sharpen(header: Header) -> Sharpen:
    """The unsharp mask a .tok file asks decoders to apply (none before version 1.9)."""
    return Sharpen.from_codes(header.sharpen_amount, header.sharpen_sigma, header.sharpen_threshold)


def new_header(
    tokenizer: Tokenizer,
    width: int,
    height: int,
    fps: Fraction,
    chunk_frames: int,
    quality: int | None,
    entropy: EntropyParams | None = None,
    audio: AudioTrack | None = None,
    coded: tuple[int, int] | None = None,
    level: int | None = None,
    luma: LumaRange = NOMINAL,
    luma_layer: bool = False,
    chroma_layer: bool = False,
    sharpen: Sharpen = NO_SHARPEN,
) -> tuple[Header, EntropyPrior | None]:
    """The header of a new .tok file (frames 0 until written) and the entropy
    prior its chunks are coded with (the model's shipped one by default).
    `quality`: the point of the model's ladder (None: its default), whose
    LFQ level the tokens keep unless `level` is given; `coded` = (width,
    height) the frames are resampled to before the tokenizer (None: not
    resampled; the caller applies the point's scale); `luma`: the Y' span
    the frames were read in (`source_span`); `luma_layer`, `chroma_layer`: whether
    chunks may carry a coarse Y' layer, and Cb and Cr layers; `sharpen`: the
    unsharp mask decoders apply (`codec.sharpen`)."""
    ladder = model_ladder(tokenizer.config)
    quality = ladder.default if quality is None else quality
    bits = tokenizer.level_bits(ladder.point(quality).level if level is None else level)
    cw, ch = coded or (width, height)
    _, ph, pw = tokenizer.padded_size(1, ch, cw)
    prior = model_prior(tokenizer, bits) if entropy is None or entropy.prior else None
    if entropy is None:
        _, th, tw = tokenizer.token_shape(1, ch, cw)
        entropy = EntropyParams.for_encoding(prior, th * tw)
    header = Header(model=tokenizer.config.name, fingerprint=fingerprint(tokenizer), width=width, height=height,
                    padded_width=pw, padded_height=ph, fps=fps, frames=0, chunk_frames=chunk_frames,
                    temporal_factor=tokenizer.temporal_factor, spatial_factor=tokenizer.spatial_factor, bits=bits,
                    quality=quality, entropy=entropy, audio=audio,
                    coded_width=0 if (cw, ch) == (width, height) else cw,
                    coded_height=0 if (cw, ch) == (width, height) else ch,
                    luma_black=luma.black, luma_white=luma.white, luma_matrix=luma.matrix_code,
                    luma_layer=CHROMA_LAYERS if chroma_layer else LUMA_LAYER if luma_layer else 0,
                    sharpen_amount=sharpen.codes[0], sharpen_sigma=sharpen.codes[1],
                    sharpen_threshold=sharpen.codes[2])
    return header, prior


def _audio_track(info: AudioStreamInfo | None) -> AudioTrack | None:
    if info is None:
        return None
    return AudioTrack(info.codec, info.rate, info.layout, info.time_base, info.extradata)


class _AudioSplitter:
    """Hands out the source's audio packets chunk by chunk, by timestamp."""

    def __init__(self, packets: Iterator[AudioPacketData], info: AudioStreamInfo | None, fps: Fraction) -> None:
        self.packets, self.info, self.fps = packets, info, fps
        self.pending: AudioPacketData | None = None

    def until(self, end_frame: int | None) -> list[AudioPacket]:
        """Packets starting before frame `end_frame` (all the rest when None)."""
        out = []
        while True:
            p = self.pending or next(self.packets, None)
            self.pending = None
            if p is None:
                return out
            if end_frame is not None and p.pts * self.info.time_base >= end_frame / self.fps:
                self.pending = p
                return out
            out.append(AudioPacket(p.pts, p.duration, p.data))


# ---------------------------------------------------------------- decode


@contextmanager
def named_errors(path: str | os.PathLike) -> Iterator[None]:
    """Prefix .tok errors raised inside the block with the file they are about."""
    try:
        yield
    except TokError as exc:
        raise TokError(f"{path}: {exc}") from None


def open_tok(path: str | os.PathLike) -> TokReader:
    """Open a .tok file for random access (see `bitstream.container.TokReader`)."""
    return TokReader(path, prior_for=prior_for)


def read_tokens(path: str | os.PathLike, start: int = 0, frames: int | None = None) -> Iterator[TokenChunk]:
    """Yield the token grids of a .tok file chunk by chunk, with their frame ranges.

    Only the chunks that hold frames [start, start + frames) are read.
    """
    with named_errors(path), open_tok(path) as reader:
        for chunk in reader.chunks(start, frames):
            yield TokenChunk(chunk.first_frame, chunk.frames, chunk.tokens)


def model_for(header: Header, model: Tokenizer | None = None) -> Tokenizer:
    """The tokenizer a .tok file was made with, refusing other weights."""
    tokenizer = model or load_tokenizer(header.model)
    if tokenizer.config.name != header.model:
        raise TokError(f"the file was made with model {header.model}, not {tokenizer.config.name}")
    if fingerprint(tokenizer) != header.fingerprint:
        raise TokError(
            f"the file was made with other weights of {header.model} "
            f"(fingerprint {header.fingerprint}, this tokcodec has {fingerprint(tokenizer)})"
        )
    if header.bits > tokenizer.config.bits:
        raise TokError(f"the file has {header.bits}-bit tokens; model {header.model} has {tokenizer.config.bits}")
    return tokenizer


def decode_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    start: int = 0,
    frames: int | None = None,
    model: Tokenizer | None = None,
    lossless: bool = False,
    force: bool = False,
    quiet: bool = True,
    onnx: str | os.PathLike | None = None,
    precision: str = "auto",
    sharpen: bool | float | Sharpen = True,
) -> DecodeReport:
    """Decode a .tok file (or a frame range of it, found through the index) to an mp4.

    `onnx`: a folder from `tokcodec export-onnx` of the file's weights, or
    "auto" (as in `encode_file`): decode with onnxruntime, frame by frame (the 'stream' extra; 1.4x to
    1.8x torch's fps from about 640x272 up on 2 CPU cores, no faster on
    small frames; frames within a level of torch's).
    `precision`: torch's, as in `encode_file` ("auto": bfloat16 where the
    hardware has it, about twice the speed; frames within two levels of
    float32's).
    `sharpen`: apply the unsharp mask the file asks for (`codec.sharpen`;
    False: the decoder's squared-error frames; a float: the file's mask at
    that amount, as a viewer's sharpness setting; `decoder_sharpen`).
    """
    check_output(output, force)
    if frames is not None and frames < 1:
        raise ValueError("--frames must be at least 1")
    began = time.monotonic()
    with named_errors(source), open_tok(source) as reader:
        h = reader.header
        tokenizer = model_for(h, model)
        precision = _check_precision(precision, onnx, tokenizer)
        engine = onnx_engine(onnx, h.model, h.fingerprint, tokenizer) if onnx is not None else None
        entries = reader.entries_for(start, frames)
        mask = decoder_sharpen(h, sharpen)
        end = min(reader.frames, start + frames) if frames is not None else reader.frames
        audio = None
        if h.audio is not None:
            a = h.audio
            info = AudioStreamInfo(a.codec, a.rate, a.layout, a.time_base, a.extradata)
            packets = (AudioPacketData(p.pts, p.duration, p.data) for p in reader.audio_packets(start, frames))
            audio = (info, packets)
        with Progress(end - start, "decode", quiet=quiet) as progress, VideoWriter(
            output, h.fps, h.width, h.height, lossless=lossless, audio_packets=audio, audio_start=float(start / h.fps),
            luma=header_span(h),
        ) as writer:
            for e in entries:
                chunk = reader.read_chunk(e.index)
                decoded = apply_layers(decode_chunk(tokenizer, h, chunk.tokens, chunk.frames, engine, precision),
                                       chunk.layers, matrix=h.luma_matrix)
                wanted = decoded[max(start - chunk.first_frame, 0) : end - chunk.first_frame]
                for frame in sharpen_frames(wanted, mask, h.luma_matrix):
                    writer.write(frame)
                    progress.update(1)
    return DecodeReport(str(output), start, end - start, len(entries), time.monotonic() - began)


def decode_chunk(tokenizer: Tokenizer, header: Header, tokens: np.ndarray, frames: int,
                 engine: Any = None, precision: str = "fp32") -> np.ndarray:
    """uint8 frames (frames, height, width, 3) of one chunk's token grid, with
    torch (in segments, in `precision`) or, given one, an onnxruntime `engine`
    (frame by frame). Both round to 8 bits at the coded size before
    resampling to the displayed one, so that in float32 they give the same frames."""
    cw, ch = header.coded_size
    if engine is not None:
        segments = (frame[None, :ch, :cw] for frame in StreamingDecoder(engine, header.bits).decode_chunk(tokens))
        return _joined(segments, frames, header.height, header.width)
    with network_precision(precision, tokenizer.device):
        segments = decoded_segments(tokenizer, torch.from_numpy(tokens)[None], (frames, ch, cw), header.bits)
        return _joined(map(video_to_frames, segments), frames, header.height, header.width)


def _joined(segments: Iterable[np.ndarray], frames: int, height: int, width: int) -> np.ndarray:
    """The first `frames` of a chunk's uint8 frames, which come as segments (f, h, w, 3) in order,
    resampled to (height, width) a segment at a time into one array: the chunk is held once, at
    the displayed size."""
    out = np.empty((frames, height, width, 3), np.uint8)
    done = 0
    for segment in segments:
        part = resize_frames(segment[: frames - done], height, width)
        out[done : done + len(part)] = part
        done += len(part)
        if done == frames:
            break
    if done < frames:
        raise ValueError(f"a chunk of {frames} frames decoded to {done}")
    return out


def _drained(items: list[np.ndarray]) -> Iterator[np.ndarray]:
    """The list's items in order, each taken out of it as it is given (so that its memory can go)."""
    while items:
        yield items.pop(0)


def _check_precision(precision: str, onnx: str | os.PathLike | None, tokenizer: Tokenizer) -> str:
    """"fp32" or "bf16", what `precision` comes to on the tokenizer's device (resolved once
    per file, not per chunk); refuses a precision that is not one, and bfloat16 asked of
    onnxruntime (float32 only)."""
    if onnx is not None and precision == "bf16":
        raise ValueError("--precision bf16 is for torch; onnxruntime computes in float32: leave out one of them")
    return resolve_precision(precision, tokenizer.device)


def cache_dir() -> Path:
    """Where tokcodec keeps what it can remake: $TOKCODEC_CACHE, else
    $XDG_CACHE_HOME/tokcodec, else ~/.cache/tokcodec."""
    if os.environ.get("TOKCODEC_CACHE"):
        return Path(os.environ["TOKCODEC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokcodec"


def onnx_engine(directory: str | os.PathLike, model: str, weights: str, tokenizer: Tokenizer | None = None) -> Any:
    """The onnxruntime engine of the export in `directory`, refusing an
    export of another model or other weights (`fingerprint`). "auto": the
    export of `tokenizer` kept under `cache_dir()/onnx`, made on first use
    (about 2 s)."""
    try:
        from tokcodec.streaming.onnx_runtime import OnnxEngine
    except ImportError as exc:  # onnxruntime is in the 'stream' extra
        raise ValueError(f"--onnx needs onnxruntime ({exc}): pip install 'tokcodec[stream]'") from None
    if str(directory) == "auto":
        directory = cache_dir() / "onnx" / f"{model}-{weights}"
        if not (directory / "manifest.json").is_file():
            from tokcodec.streaming.onnx_export import export_onnx

            export_onnx(tokenizer or load_tokenizer(model), directory)
    engine = OnnxEngine(directory)
    if (engine.model, engine.fingerprint) != (model, weights):
        raise TokError(f"{directory}: an export of {engine.model} (weights {engine.fingerprint}), "
                       f"not of {model} (weights {weights})")
    return engine


def _split_latent(tokenizer: Tokenizer, engine: Any, chunk: np.ndarray, points: list[int],
                  precision: str, ends: Callable[[torch.Tensor], bool]) -> tuple[torch.Tensor, int | None]:
    """The encoder latent (1, K, T', H', W') of a chunk, by an onnxruntime `engine` or by torch's
    networks from its coded uint8 frames (1 + t*k, H, W, 3),
    and where the chunk ends early: the first of `points` (frame counts, ascending, each fewer than
    the chunk's) where `ends` judges from the latent so far that it ends, with the latent of those
    frames only (the encoder is causal: what a chunk of them gives), or None. torch stops encoding
    there; onnxruntime encodes them all."""
    heads = [(p, 1 + (p - 1) // tokenizer.temporal_factor) for p in points]  # latent frames of each point's
    if engine is not None:
        z = torch.from_numpy(chunk_latent(engine, pad_frames(chunk, tokenizer.spatial_factor)))
        return next(((z[:, :, :head], p) for p, head in heads if ends(z[:, :, :head])), (z, None))
    with network_precision(precision, tokenizer.device):
        segments = latent_segments(tokenizer, FrameVideo(chunk))
        parts: list[torch.Tensor] = []
        for done, z in segments:
            parts.append(z)
            while heads and done >= heads[0][0]:
                p, head = heads.pop(0)
                parts = [torch.cat(parts, dim=2)]
                if ends(parts[0][:, :, :head]):
                    segments.close()
                    return parts[0][:, :, :head], p
        return torch.cat(parts, dim=2), None


def onnx_encode_chunk(engine: Any, frames: np.ndarray, bits: int, hysteresis: float, stride: int) -> np.ndarray:
    """Tokens (T', H', W') of a chunk's uint8 frames (1 + t*k, H, W, 3) by the
    streaming encoder on `engine`, the frames padded to the spatial `stride`
    by repeating the last row and column, as `Tokenizer.pad` does."""
    encoder = StreamingEncoder(engine, len(frames), bits, hysteresis)
    return np.stack([t for t in map(encoder.push, pad_frames(frames, stride)) if t is not None])


def pad_frames(frames: np.ndarray, stride: int) -> np.ndarray:
    """uint8 frames (T, H, W, 3) padded to multiples of `stride` by repeating the
    last row and column, as `Tokenizer.pad` pads."""
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, -h % stride), (0, -w % stride), (0, 0)), mode="edge")


# ---------------------------------------------------------------- info


def tok_info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a .tok file, as `tokcodec info --json` prints it."""
    with named_errors(path), open_tok(path) as reader:
        h = reader.header
        chunks = [reader.read_chunk(e.index, tokens=False) for e in reader.entries]
        token_bytes = sum(c.payload_bytes for c in chunks)
        layer_bytes = sum(c.layer_bytes for c in chunks)
        audio_bytes = sum(16 + len(p.data) for c in chunks for p in c.audio)
        grid = h.token_grid
        tokens = sum(h.chunk_token_frames(e.frames) * grid[1] * grid[2] for e in reader.entries)
        size = reader.size
        return {
            "width": h.width,
            "height": h.height,
            "coded_size": list(h.coded_size),
            "frames": reader.frames,
            "fps": f"{h.fps.numerator}/{h.fps.denominator}",
            "fps_float": float(h.fps),
            "duration": float(reader.frames / h.fps),
            "model": h.model,
            "fingerprint": h.fingerprint,
            "quality": h.quality,
            "chunks": len(reader.entries),
            "chunk_frames": h.chunk_frames,
            "short_chunks": short_chunks(reader.entries, h.chunk_frames),  # ended at scene cuts or by a split
            "token_grid": list(grid),
            "bits": h.bits,
            "entropy_model": h.entropy.model_id,
            "entropy_prior": f"{h.entropy.prior:08x}" if h.entropy.prior else None,
            "bytes": size,
            "token_bytes": token_bytes,
            "audio_bytes": audio_bytes,
            "layer_bytes": layer_bytes,
            "layer_chunks": sum(bool(c.layers) for c in chunks),
            "layer_planes": {name: sum(c.layers.planes[i] is not None for c in chunks)  # chunks with each plane's
                             for i, name in enumerate(("y", "cb", "cr"))},
            "tokens": tokens,
            "bits_per_token": 8 * token_bytes / tokens,
            "bpp": 8 * size / (reader.frames * h.width * h.height),
            "video_bpp": 8 * (size - audio_bytes) / (reader.frames * h.width * h.height),
            "kbps": 8 * size / float(reader.frames / h.fps) / 1000,
            "audio": None if h.audio is None else {"codec": h.audio.codec, "rate": h.audio.rate, "layout": h.audio.layout},
            "luma_range": [h.luma_black, h.luma_white],
            "matrix": header_span(h).matrix,
            "sharpen": list(astuple(header_sharpen(h))),  # amount, sigma, threshold
        }
