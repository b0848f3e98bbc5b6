"""`tokcodec serve DIR`: .tok playback and live ingest over WebRTC (aiortc + aiohttp).

HTTP routes:

    GET  /            the web page (streaming/web/index.html)
    GET  /files       JSON list of the .tok files in DIR with their geometry
    POST /offer       {"sdp", "type", "file": NAME}     play NAME to the caller
                      {"sdp", "type", "file": NAME, "transport": "tokens"}
                                                        send NAME's token chunks on a data channel
                      {"sdp", "type", "ingest": true}   record the caller's camera
                      -> {"sdp", "type"} (ingest also gets "file": the .tok it writes)

Token transport: the client opens an RTCDataChannel labelled "tokens"
before its offer; the server sends binary messages, each starting with a
kind byte:

    0x00 + the file's FileHeader bytes (bitstream/FORMAT.md)
    0x01 + u32 chunk index + u16 part + u16 parts + bytes   (little-endian)
         the chunk's bytes exactly as stored, in parts of at most 16 KiB
    0x02 end of the stream

Chunks go out when their first frame is due at the file's frame rate. The
header bytes followed by every chunk's bytes in order form a valid .tok
file (without index) that `tokcodec decode` reads; a client can decode
chunk by chunk as they arrive.

Playback decodes the file's tokens chunk by chunk (in a worker thread, so
the event loop keeps serving) and sends frames at the file's frame rate.
Live ingest samples the incoming camera track at `IngestConfig.fps`, scales
it to at most `max_side` pixels, encodes it frame by frame with the
stateful streaming encoder (ONNX when the server has an export) at the ladder
point `quality` with its scale capped at `max_scale` (1: the ingest size),
appends each finished chunk (`chunk_frames`, or fewer before a scene cut or,
after `split_frames`, where the picture moves, as `encode` decides),
with its coarse layers, to DIR/live-*.tok (playable while it grows) and
sends the decoded reconstruction back on the same connection
(without the layers, which are chosen when the chunk ends), with the unsharp
mask the file asks decoders for (`IngestConfig.sharpen`). Where the coding
cannot keep up with the frame clock, frame times are lost and the file is
closed at the frame rate it was coded at.

Every peer connection is tracked and closed when its client goes away
(ICE failure, close) or when the server stops; errors go to that client
only, as JSON {"error": ...} with a 4xx status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tokcodec.bitstream.container import Header, TokError, TokWriter
from tokcodec.bitstream.luma_layer import Layers
from tokcodec.codec import Tokenizer, load_tokenizer
from tokcodec.codec.clips import coded_size, resize_frames
from tokcodec.codec.luma_layer import apply as apply_layers, corrections
from tokcodec.codec.luma_range import LumaRange, to_display
from tokcodec.codec.precision import resolve_precision
from tokcodec.codec.scene_cuts import SceneCuts
from tokcodec.codec.sharpen import DEFAULT_SHARPEN, Sharpen, sharpen
from tokcodec.ladder import MAX_SCALE, Ladder, OperatingPoint, model_ladder

from .chunk_split import ChunkSplit
from .rate_control import choose_layers
from .stateful import StreamingDecoder, StreamingEncoder, TorchEngine

log = logging.getLogger("tokcodec.serve")
AUTO_SCALE = "auto"  # IngestConfig.max_scale: the largest scale the engine keeps up with
LIVE_BUDGET = 0.6  # share of a frame period that live coding may take: WebRTC's video codec and the loop need the rest
# How far live coding may fall behind its frame clock and still catch up (a chunk's end, a busy moment);
# frame times beyond are lost, and a file that lost many gets the frame rate it was coded at.
MAX_LAG = 0.5  # seconds
VIDEO_CLOCK = 90000  # RTP video clock rate
WEB = Path(__file__).with_name("web")


@dataclass(frozen=True)
class IngestConfig:
    """How live camera video is encoded."""

    fps: int = 10  # frames per second sampled from the camera (the .tok's frame rate)
    max_side: int = 256  # the camera is scaled down to at most this many pixels on its long side
    # Frames per chunk (1 + 4k for the default model): a chunk reaches the growing file when it ends
    # (3.3 s after its first frame at 33 frames and 10 fps, 6.5 s at 65); 33 took 5% to 15% fewer
    # bits than 17 for the same quality on live coding (bench/RESULTS.md, "Live chunks of 33 frames").
    chunk_frames: int = 65
    # A longer chunk ends after this many frames (1 + 4k; 0: never), or a further multiple of this
    # less 1, where the picture moves, as `encode --chunk-split` decides (`streaming.chunk_split`):
    # a steady camera keeps long chunks, which save intra frames' bits, a moving one gets short ones
    # (bench/RESULTS.md, "Live chunks that end early where the picture moves").
    split_frames: int = 33
    quality: int | None = None  # point of the rate ladder (None: the model's default)
    # The point's coding scale is capped at this (`Ladder.for_frame(max_scale=...)`), a capped point
    # taking more bits per token instead. 1 (coded at the ingest size) keeps the default model in real
    # time at 256 pixels on 2 CPU cores with either engine; the ladder's own scale (2x at the default
    # point: 4x the compute) takes 25% to 41% fewer bits for the same PSNR-Y, and keeps up there only
    # with torch in bfloat16 (bench/RESULTS.md, "Live ingest"). "auto": the largest scale whose coding
    # this engine keeps within LIVE_BUDGET of a frame's period, timed when the camera's first frame
    # comes (`live_point`).
    max_scale: float | str = AUTO_SCALE
    model: str | None = None  # shipped tokenizer to encode with (None: the default one)
    # The unsharp mask of the decoded luma, at the files' default sigma and threshold (0: none): the
    # .tok asks every decoder for it and the reconstruction sent back has it (`codec.sharpen`; on
    # live coding about +2 VMAF for 0.01 dB PSNR-Y, bench/RESULTS.md, "Live ingest").
    sharpen: float = DEFAULT_SHARPEN.amount
    # Each chunk's coarse luma and chroma layers, chosen as `encode` chooses them, on the chunk's
    # decoded frames, in a worker thread when the chunk ends; the file carries them, the frames sent
    # back (already on their way) do not (on live coding 19% to 44% fewer bits for the same PSNR-Y,
    # bench/RESULTS.md, "Live ingest").
    layers: bool = True
    # A chunk ends early where a scene cut starts the next (`codec.scene_cuts`, as `encode` does):
    # a camera switched to another scene codes it from its own first frame.
    scene_cuts: bool = True

    def __post_init__(self) -> None:
        # Settings a .tok cannot hold fail here, before the server starts.
        Sharpen.of_amount(self.sharpen)
        if self.chunk_frames < 1:
            raise ValueError(f"--ingest-chunk-frames must be at least 1, got {self.chunk_frames}")
        if self.split_frames < 0 or self.split_frames == 1:
            raise ValueError(f"--ingest-chunk-split must be 0 (never) or more than 1 frame, got {self.split_frames}")
        if self.max_scale != AUTO_SCALE and not (isinstance(self.max_scale, (int, float))
                                                  and 1 <= self.max_scale <= MAX_SCALE):
            raise ValueError(f"--ingest-max-scale must be 'auto' or in 1..{MAX_SCALE:g}, got {self.max_scale!r}")

    @property
    def split(self) -> ChunkSplit | None:
        """Where a chunk ends early because the picture moves (None: chunks are never longer)."""
        return ChunkSplit(self.split_frames) if 0 < self.split_frames < self.chunk_frames else None


def live_point(ladder: Ladder, quality: int | None, width: int, height: int, max_scale: float | str,
               fits: Callable[[OperatingPoint], bool]) -> OperatingPoint:
    """The point live ingest codes a `width` x `height` camera at: `quality`'s, its scale capped
    at `max_scale`; "auto": at the largest scale, from the point's own down to 1 in half steps,
    whose coding `fits` (1 always does)."""
    if max_scale != AUTO_SCALE:
        return ladder.for_frame(quality, width, height, max_scale)
    scale = ladder.for_frame(quality, width, height).scale
    while scale > 1:
        point = ladder.for_frame(quality, width, height, scale)
        if fits(point):
            return point
        scale = max(1.0, scale - 0.5)
    return ladder.for_frame(quality, width, height, 1.0)


def coded_frame(frame: np.ndarray, coded: tuple[int, int], padded: tuple[int, int]) -> np.ndarray:
    """A camera frame resampled to the `coded` (width, height), as `encode_file` resamples a
    file's frames, and edge-padded to the tokenizer's `padded` grid."""
    (cw, ch), (pw, ph) = coded, padded
    return np.pad(resize_frames(frame[None], ch, cw)[0], ((0, ph - ch), (0, pw - cw), (0, 0)), mode="edge")


def steady_frame_seconds(engine: Any, frame: np.ndarray, bits: int, steps: int = 2) -> float:
    """Seconds a frame of live coding (the stateful encoder and decoder) takes `engine` in a
    chunk's steady state, `frame` (padded) standing for every frame: after a chunk's first frame
    and first step (warm-up), the fastest of `steps` steps (one-off stalls are not the rate)."""
    t = engine.temporal_factor
    encoder, decoder = StreamingEncoder(engine, 1 + (1 + steps) * t, bits), StreamingDecoder(engine, bits=bits)
    encoder.push(frame)
    times = []
    for _ in range(1 + steps):
        start = time.perf_counter()
        for _ in range(t):
            tokens = encoder.push(frame)
        decoder.push(tokens)
        times.append(time.perf_counter() - start)
    return min(times[1:]) / t


class FramePacer:
    """Timestamps and real-time pacing for a video track at a rational frame rate."""

    def __init__(self, fps: Fraction) -> None:
        self.fps, self.index, self.start = fps, 0, None

    async def next_pts(self) -> int:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        delay = self.start + float(self.index / self.fps) - now
        if delay > 0:
            await asyncio.sleep(delay)
        pts = round(self.index * VIDEO_CLOCK / self.fps)
        self.index += 1
        return pts


def _video_frame(rgb: np.ndarray, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame.pts, frame.time_base = pts, Fraction(1, VIDEO_CLOCK)
    return frame


class TokFileTrack(MediaStreamTrack):
    """Plays a .tok file: decodes it chunk by chunk and sends its frames in real time."""

    kind = "video"

    def __init__(self, path: Path, engine_for: Callable[[Any], Any]) -> None:
        super().__init__()
        from tokcodec.files import open_tok

        self.reader = open_tok(path)  # raises TokError for a bad file, before any answer is sent
        h = self.reader.header
        try:
            self.engine = engine_for(h)
        except BaseException:
            self.reader.close()
            raise
        self.header, self.path = h, path
        self.pacer = FramePacer(h.fps)
        self.frames = self._frames()
        self.lock = threading.Lock()

    def _frames(self) -> Iterator[np.ndarray]:
        from tokcodec.files import header_sharpen  # files imports streaming: here, not at the top

        h = self.header
        cw, ch = h.coded_size
        decoder = StreamingDecoder(self.engine, bits=h.bits)
        span = LumaRange.from_codes(h.luma_black, h.luma_white, h.luma_matrix)  # a viewer gets display RGB
        mask = header_sharpen(h)
        for entry in self.reader.entries:
            chunk = self.reader.read_chunk(entry.index)
            layers = corrections(chunk.layers, h.height, h.width)  # once a chunk
            for i, frame in enumerate(decoder.decode_chunk(chunk.tokens)):
                if i == chunk.frames:
                    break
                frame = resize_frames(frame[None, :ch, :cw], h.height, h.width)
                frame = apply_layers(frame, chunk.layers, i, layers, h.luma_matrix)
                yield to_display(sharpen(frame, mask, h.luma_matrix)[0], span)

    def _next(self) -> np.ndarray | None:
        with self.lock:
            try:
                return next(self.frames, None)
            except (TokError, ValueError) as exc:  # a chunk turned out corrupt mid-stream
                log.warning("%s: %s; stopping playback", self.path.name, exc)
                return None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        rgb = await asyncio.to_thread(self._next)
        if rgb is None:
            self.stop()
            raise MediaStreamError
        return _video_frame(rgb, await self.pacer.next_pts())

    def stop(self) -> None:
        super().stop()
        self.reader.close()


class QueueTrack(MediaStreamTrack):
    """Sends the frames put into its queue (the ingest's reconstruction)."""

    kind = "video"

    def __init__(self, fps: Fraction) -> None:
        super().__init__()
        self.queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(maxsize=64)
        self.pacer = FramePacer(fps)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        rgb = await self.queue.get()
        if rgb is None:
            self.stop()
            raise MediaStreamError
        return _video_frame(rgb, await self.pacer.next_pts())


class Ingest:
    """Encodes one incoming camera track to a growing .tok and reconstructs it."""

    def __init__(self, track: MediaStreamTrack, output: Path, tokenizer: Tokenizer, engine, cfg: IngestConfig,
                 reply: QueueTrack) -> None:
        self.track, self.output, self.tokenizer, self.engine, self.cfg, self.reply = (
            track, output, tokenizer, engine, cfg, reply)
        self.latest: av.VideoFrame | None = None
        self.ended = asyncio.Event()
        self.writer: TokWriter | None = None
        self.frames = 0
        self.clock: tuple[float, float] | None = None  # when the frame clock started, and the last frame's time

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            try:
                await self._encode()
            finally:
                reader.cancel()
                await asyncio.to_thread(self._close)
        except Exception as exc:  # a server log line, not a task's traceback; what was written stays readable
            log.error("%s: live ingest stopped: %s", self.output.name, exc)
        finally:
            if self.reply.queue.full():  # nobody may be reading any more: make room for the end
                self.reply.queue.get_nowait()
            self.reply.queue.put_nowait(None)

    async def _read(self) -> None:
        try:
            while True:
                self.latest = await self.track.recv()
        except MediaStreamError:
            self.ended.set()

    async def _encode(self) -> None:
        period = 1 / self.cfg.fps
        next_tick = time.monotonic()
        lagged = False
        while not self.ended.is_set():
            if self.latest is not None:
                rgb = self._scale(self.latest)
                opening = self.writer is None
                sampled = time.monotonic()
                recon = await asyncio.to_thread(self._push, rgb)
                if opening:  # the first frame chose the coding, timing it: the clock starts after it
                    next_tick = time.monotonic()
                    self.clock = (next_tick, next_tick)
                else:  # the frame's time: its tick, or when it was sampled where that was a frame or more late
                    self.clock = (self.clock[0], sampled if sampled - next_tick > period else next_tick)
                for frame in recon:
                    if not self.reply.queue.full():
                        self.reply.queue.put_nowait(frame)
            next_tick += period
            now = time.monotonic()
            if self.clock is not None:
                if now - next_tick > MAX_LAG:  # more than a passing stall: those frame times are lost
                    if not lagged:
                        log.warning("%s: live coding falls behind %d fps here", self.output.name, self.cfg.fps)
                    lagged = True
                    next_tick += math.ceil((now - next_tick - MAX_LAG) / period) * period
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    def _scale(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = frame.width, frame.height
        scale = min(1.0, self.cfg.max_side / max(w, h))
        w2, h2 = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
        return frame.to_ndarray(format="rgb24", width=w2, height=h2)

    def _push(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Encode one frame; returns the reconstructed frames it completes."""
        if self.writer is None:
            self._open(rgb)
        header = self.writer.header
        out = []
        if self.cuts is not None and self.cuts.is_cut(rgb) and 0 < self.encoder.count < self.cfg.chunk_frames:
            out = self._end_chunk()  # the cut frame starts the next chunk
        self.frames += 1
        tokens = self.encoder.push(coded_frame(rgb, header.coded_size, (header.padded_width, header.padded_height)))
        if self.cfg.layers:
            self.sources.append(rgb)
        if tokens is not None:
            self.grid.append(tokens)
            out += self._decode(tokens)
            if self.encoder.count == self.cfg.chunk_frames:
                self._write_chunk(self.cfg.chunk_frames)
            elif self._moving():
                self.splits += 1
                out += self._end_chunk()  # no frame waits: the chunk ends here
        return out

    def _moving(self) -> bool:
        """Whether the chunk, at a split point, ends there because the picture moves (the tokens
        it has are the ones a file's encoder weighs: unrefined, the fixed hysteresis)."""
        split = self.cfg.split
        return (split is not None and self.encoder.count in split.points(self.cfg.chunk_frames)
                and split.ends(np.stack(self.grid), self.writer.payload_size,
                               split.window(self.tokenizer.temporal_factor)))

    def _end_chunk(self) -> list[np.ndarray]:
        """End the chunk before its length (at a scene cut, or when the camera stops): the frames
        waiting for a whole latent step are coded padded, as a file's last clip is; returns their
        reconstruction."""
        count, waiting = self.encoder.count, len(self.encoder.pending)
        last = self.encoder.flush()
        out = []
        if last is not None:
            self.grid.append(last)
            out = self._decode(last)[:waiting]
        self._write_chunk(count)
        return out

    def _decode(self, tokens: np.ndarray) -> list[np.ndarray]:
        """The frames (at the ingest size, the mask applied) that a latent frame's tokens complete;
        with layers, keeps them unmasked too, for the chunk's layers to be measured on."""
        header = self.writer.header
        cw, ch = header.coded_size
        decoded = [f[:ch, :cw] for f in self.decoder.push(tokens)]
        if not decoded:
            return []
        frames = resize_frames(np.stack(decoded), header.height, header.width)
        if self.cfg.layers:
            self.decoded.extend(frames)
        return list(sharpen(frames, self.mask, header.luma_matrix))

    def _fits(self, point: OperatingPoint, frame: np.ndarray) -> bool:
        """Whether this engine codes frames at `point` within LIVE_BUDGET of a frame period."""
        cw, ch = coded_size(frame.shape[1], frame.shape[0], point.scale)
        _, ph, pw = self.tokenizer.padded_size(1, ch, cw)
        padded = coded_frame(frame, (cw, ch), (pw, ph))
        seconds = steady_frame_seconds(self.engine, padded, self.tokenizer.level_bits(point.level))
        log.info("live coding at %gx (%dx%d): %.0f ms a frame", point.scale, cw, ch, 1000 * seconds)
        return seconds <= LIVE_BUDGET / self.cfg.fps

    def _open(self, first: np.ndarray) -> None:
        from tokcodec.files import check_chunk_frames, new_header

        if self.cfg.split is not None:
            check_chunk_frames(self.tokenizer, self.cfg.split_frames, "--ingest-chunk-split")
        height, width = first.shape[:2]
        point = live_point(model_ladder(self.tokenizer.config), self.cfg.quality, width, height, self.cfg.max_scale,
                           lambda p: self._fits(p, first))
        self.mask = Sharpen.of_amount(self.cfg.sharpen)
        header, prior = new_header(self.tokenizer, width, height, Fraction(self.cfg.fps), self.cfg.chunk_frames,
                                   self.cfg.quality, coded=coded_size(width, height, point.scale), level=point.level,
                                   luma_layer=self.cfg.layers, chroma_layer=self.cfg.layers, sharpen=self.mask)
        self.writer = TokWriter(self.output, header, atomic=False, prior=prior)
        self.encoder = StreamingEncoder(self.engine, self.cfg.chunk_frames, header.bits)
        self.decoder = StreamingDecoder(self.engine, bits=header.bits)
        self.cuts = SceneCuts() if self.cfg.scene_cuts else None
        self.splits = 0  # chunks that ended early because the picture moves
        self.grid: list[np.ndarray] = []
        self.sources: list[np.ndarray] = []  # the chunk's frames as read, and as decoded: for its layers
        self.decoded: list[np.ndarray] = []
        # Chunks are coded and written in order by one worker, so that choosing a chunk's layers does
        # not stall sampling; at most one waits for it (a worker a chunk behind holds up the next).
        self.chunk_writer = ThreadPoolExecutor(1, thread_name_prefix="live-chunks")
        self.writing: Future | None = None

    def _write_chunk(self, frames: int) -> None:
        """Hand the chunk that just ended (`frames` real frames) to the worker and start the next."""
        grid, sources, decoded = np.stack(self.grid), self.sources[:frames], self.decoded[:frames]
        self.grid, self.sources, self.decoded = [], [], []
        self.decoder.reset()
        previous, self.writing = self.writing, None
        if previous is not None:
            previous.result()  # a chunk that failed to write stops the ingest here, before a gap in the file
        self.writing = self.chunk_writer.submit(self._code_chunk, frames, grid, sources, decoded)

    def _code_chunk(self, frames: int, grid: np.ndarray, sources: list[np.ndarray], decoded: list[np.ndarray]) -> None:
        """Entropy-code a chunk and append it, with the coarse layers that score best on its frames."""
        payload = self.writer.token_payload(grid)
        layers = Layers()
        if self.cfg.layers and len(sources) == len(decoded) == frames:
            layers = choose_layers(np.stack(sources), np.stack(decoded), len(payload), self.writer.header.luma_matrix,
                                   True, True)
        self.writer.write_chunk(frames, grid, (), layers, payload)

    def _played_rate(self, header: Header) -> Header:
        """The header at the frame rate the file was coded at, where that fell more than 2% short of
        its clock's (a machine too slow for it): so that it plays in the time it was recorded in."""
        if self.clock is None:
            return header
        ticks = 1 + (self.clock[1] - self.clock[0]) * self.cfg.fps  # frame times, the first frame's to the last's
        if self.frames >= 0.98 * ticks:
            return header
        fps = (Fraction(self.cfg.fps) * self.frames / Fraction(ticks)).limit_denominator(1000)
        log.warning("%s: coded %d frames in %.1f s: written at %.2f fps instead of %d",
                    self.output.name, self.frames, ticks / self.cfg.fps, fps, self.cfg.fps)
        return replace(header, fps=fps)

    def _close(self) -> None:
        if self.writer is None:
            return
        try:
            if 0 < self.encoder.count < self.cfg.chunk_frames:
                self._end_chunk()  # a partial last chunk (its frames are not sent back)
        finally:
            self.chunk_writer.shutdown(wait=True)
            self.writer.header = self._played_rate(self.writer.header)
            self.writer.close()  # the chunks written so far stay readable
        if self.writing is not None:
            self.writing.result()  # a last chunk that failed to write fails the file here
        log.info("%s: %d frames, %d chunk(s) ended early where the picture moves", self.output.name,
                 self.frames, self.splits)


class TokServer:
    """State of one `tokcodec serve`: the folder, the engines, the live connections."""

    def __init__(self, directory: Path, onnx_dir: Path | str | None = None,
                 ingest: IngestConfig = IngestConfig(), precision: str = "auto") -> None:
        self.directory, self.onnx_dir, self.ingest_cfg = directory, onnx_dir, ingest
        self.precision = precision  # torch's engines' (`codec.precision`)
        self.pcs: set[RTCPeerConnection] = set()
        self.tasks: set[asyncio.Task] = set()
        self._tokenizers: dict[str, Tokenizer] = {}
        self._onnx_engines: dict[tuple[str, str] | None, Any] = {}  # None: the one --onnx folder

    # -- engines -------------------------------------------------------
    def tokenizer(self, name: str | None = None) -> Tokenizer:
        key = name or ""
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(name)
        return self._tokenizers[key]

    def engine_for(self, header) -> Any:
        """The engine that decodes a file: the ONNX export when it is of the file's weights, else torch."""
        from tokcodec.files import model_for

        return self.engine(model_for(header, self.tokenizer(header.model)))

    def engine(self, tokenizer: Tokenizer) -> Any:
        """The ONNX export of `tokenizer`'s weights if `--onnx` gave one ("auto":
        made on first use and cached per model and weights), else torch."""
        from tokcodec.codec import fingerprint

        if self.onnx_dir is None:
            return TorchEngine(tokenizer, self.precision)
        key = (tokenizer.config.name, fingerprint(tokenizer))
        if str(self.onnx_dir) == "auto":
            if key not in self._onnx_engines:
                from tokcodec.files import onnx_engine

                self._onnx_engines[key] = onnx_engine("auto", *key, tokenizer)
            return self._onnx_engines[key]
        if None not in self._onnx_engines:
            from .onnx_runtime import OnnxEngine

            self._onnx_engines[None] = OnnxEngine(self.onnx_dir)
        onnx = self._onnx_engines[None]
        return onnx if (onnx.model, onnx.fingerprint) == key else TorchEngine(tokenizer, self.precision)

    # -- routes --------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.FileResponse(WEB / "index.html")

    async def files(self, request: web.Request) -> web.Response:
        from tokcodec.files import tok_info

        out = []
        for path in sorted(self.directory.glob("*.tok")):
            try:
                info = await asyncio.to_thread(tok_info, path)
                # the coded size is what the decoder computes at: a file coded above its size plays slower
                out.append({"name": path.name, "width": info["width"], "height": info["height"],
                            "frames": info["frames"], "fps": info["fps"], "bytes": info["bytes"],
                            "quality": info["quality"], "coded_size": info["coded_size"],
                            "kbps": round(info["kbps"], 1)})
            except (TokError, ValueError, OSError) as exc:
                out.append({"name": path.name, "error": str(exc)})
        return web.json_response(out)

    async def offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            if not isinstance(params, dict):
                raise ValueError("the offer must be a JSON object")
            sdp, kind = params.get("sdp"), params.get("type")
            if not isinstance(sdp, str) or kind != "offer":
                raise ValueError('the offer needs "sdp" (a string) and "type": "offer"')
        except (ValueError, json.JSONDecodeError) as exc:
            return _error(400, f"malformed offer: {exc}")
        pc = RTCPeerConnection()
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)

        try:
            if params.get("ingest"):
                answer = await self._answer_ingest(pc, sdp)
            elif params.get("transport") == "tokens":
                answer = await self._answer_tokens(pc, sdp, params.get("file"))
            elif params.get("transport", "video") != "video":
                raise _ClientError(400, 'unknown "transport" (use "video" or "tokens")')
            else:
                answer = await self._answer_play(pc, sdp, params.get("file"))
        except _ClientError as exc:
            await self._drop(pc)
            return _error(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - one client's bad offer must not stop the server
            await self._drop(pc)
            log.warning("offer failed: %s", exc)
            return _error(400, f"cannot answer the offer: {exc}")
        return web.json_response(answer)

    def _file(self, name: Any) -> Path:
        if not isinstance(name, str) or not name or Path(name).name != name or not name.endswith(".tok"):
            raise _ClientError(400, 'the offer needs "file": the name of a .tok file in the served folder')
        path = self.directory / name
        if not path.is_file():
            raise _ClientError(404, f"{name}: no such file")
        return path

    async def _answer_tokens(self, pc: RTCPeerConnection, sdp: str, name: Any) -> dict[str, Any]:
        from tokcodec.files import open_tok

        path = self._file(name)
        try:
            reader = await asyncio.to_thread(open_tok, path)
        except (TokError, ValueError, OSError) as exc:
            raise _ClientError(422, f"{name}: {exc}") from None

        @pc.on("datachannel")
        def on_channel(channel) -> None:
            if channel.label != "tokens":
                return
            task = asyncio.create_task(send_tokens(channel, reader))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        if not pc.sctp:
            reader.close()
            raise _ClientError(400, 'a token-transport offer must open a data channel labelled "tokens"')
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _answer_play(self, pc: RTCPeerConnection, sdp: str, name: Any) -> dict[str, Any]:
        path = self._file(name)
        try:
            track = await asyncio.to_thread(TokFileTrack, path, self.engine_for)
        except (TokError, ValueError, OSError) as exc:
            raise _ClientError(422, f"{name}: {exc}") from None
        pc.addTrack(track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _answer_ingest(self, pc: RTCPeerConnection, sdp: str) -> dict[str, Any]:
        cfg = self.ingest_cfg
        reply = QueueTrack(Fraction(cfg.fps))
        output = self.directory / time.strftime("live-%Y%m%d-%H%M%S.tok")
        n = 1
        while output.exists():
            output = output.with_name(f"{output.stem.split('.')[0]}-{n}.tok")
            n += 1
        tokenizer = self.tokenizer(cfg.model)
        engine = self.engine(tokenizer)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video":
                return
            task = asyncio.create_task(Ingest(track, output, tokenizer, engine, cfg, reply).run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        if not any(t.kind == "video" for t in pc.getTransceivers()):
            raise _ClientError(400, "an ingest offer must send a video track")
        pc.addTrack(reply)  # answers on the camera's own transceiver: the reconstruction goes back to the sender
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "file": output.name}

    async def _drop(self, pc: RTCPeerConnection) -> None:
        if pc in self.pcs:
            self.pcs.discard(pc)
            await pc.close()

    async def shutdown(self, app: web.Application | None = None) -> None:
        await asyncio.gather(*(self._drop(pc) for pc in list(self.pcs)))
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/", self.index)
        app.router.add_get("/files", self.files)
        app.router.add_post("/offer", self.offer)
        app.on_shutdown.append(self.shutdown)
        return app


class ServerThread:
    """A `TokServer` in a background thread with its own event loop, on a free
    port of 127.0.0.1 (`.port`): for tests, benchmarks and embedding.

        with ServerThread(TokServer(folder)) as srv:
            url = f"http://127.0.0.1:{srv.port}/"
    """

    def __init__(self, server: TokServer) -> None:
        self.server, self.loop = server, asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.server.app())
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the server thread did not start within 30 s")
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


TOKEN_PART = 16384  # bytes of a chunk per data-channel message


async def send_tokens(channel, reader) -> None:
    """Send a .tok file's header and chunks on a data channel (framing: see the module docstring)."""
    import struct

    try:
        if channel.readyState != "open":
            opened = asyncio.Event()
            channel.on("open", opened.set)
            await asyncio.wait_for(opened.wait(), 30)
        h = reader.header
        channel.send(b"\x00" + h.to_bytes())
        start = time.monotonic()
        for e in reader.entries:
            delay = start + float(e.first_frame / h.fps) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            data = await asyncio.to_thread(reader.chunk_bytes, e.index)
            parts = max(1, -(-len(data) // TOKEN_PART))
            for p in range(parts):
                piece = data[p * TOKEN_PART : (p + 1) * TOKEN_PART]
                channel.send(b"\x01" + struct.pack("<IHH", e.index, p, parts) + piece)
            while channel.bufferedAmount > 1 << 20:  # the client is slow: do not queue the whole file
                await asyncio.sleep(0.05)
        channel.send(b"\x02")
    except Exception as exc:  # noqa: BLE001 - it ends this client's stream only
        log.warning("token stream of %s stopped: %s", reader.path.name, exc)
    finally:
        reader.close()


def read_token_messages(messages: list[bytes]) -> bytes:
    """Reassemble a token stream's messages into .tok bytes (header + chunks); for clients and tests."""
    import struct

    header, chunks = b"", {}
    for m in messages:
        if m[:1] == b"\x00":
            header = m[1:]
        elif m[:1] == b"\x01":
            index, part, parts = struct.unpack_from("<IHH", m, 1)
            chunks.setdefault(index, [None] * parts)[part] = m[9:]
    return header + b"".join(b"".join(p) for _, p in sorted(chunks.items()) if None not in p)


class _ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def serve(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 8080, onnx_dir: str | None = None,
          ingest: IngestConfig = IngestConfig(), precision: str = "auto") -> None:
    """Run the server until interrupted; `precision`: torch's engines' (`codec.precision`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a folder")
    resolve_precision(precision)  # refuses a bad value before the server starts
    server = TokServer(directory, (onnx_dir if onnx_dir == "auto" else Path(onnx_dir)) if onnx_dir else None, ingest,
                       precision)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    web.run_app(server.app(), host=host, port=port, print=lambda msg: log.info(msg))
