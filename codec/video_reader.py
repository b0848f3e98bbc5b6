"""Reading videos: probe a file, stream its frames or fixed-length clips.

Reading decodes one frame at a time, so memory is bounded by one clip
whatever the length of the video. Bad input is reported as VideoError with a
one-line message naming the file; PyAV's own exceptions never escape.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Union

import av
import av.error
import numpy as np

from .luma_range import LumaRange, yuv_to_rgb
from .scene_cuts import SceneCuts

PathLike = Union[str, "os.PathLike[str]"]

# AV_DISPOSITION_ATTACHED_PIC: cover art in music files is a one-frame "video"
# stream; an mp3 with a cover is still an audio-only file to us.
_ATTACHED_PIC = 0x400


class VideoError(Exception):
    """A user-facing error with a one-line message (e.g. 'x.txt: not a video file (...)')."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds out about a video file."""

    path: str
    width: int  # display width, i.e. after applying rotation metadata
    height: int  # display height
    fps: Fraction  # exact rational frame rate
    frames: int | None  # frame count if the container states it, else None
    rotation: int  # clockwise degrees needed to display upright: 0, 90, 180 or 270
    has_audio: bool
    codec: str  # video codec name


@dataclass
class Clip:
    """Consecutive frames of a video, padded to a length the tokenizer accepts."""

    frames: np.ndarray  # uint8 (T, H, W, 3); T = 1 + stride*k
    start: int  # index in the video of the first frame
    valid: int  # how many of the T frames are real (the rest repeat the last real one)


# ---------------------------------------------------------------- reading


def _reason(exc: BaseException) -> str:
    """A short one-line reason, without PyAV's errno and file name decoration."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open_media(path: PathLike) -> av.container.InputContainer:
    """Open any media file for reading, turning every failure into VideoError."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise VideoError(f"{name}: no such file")
    if os.path.isdir(name):
        raise VideoError(f"{name}: is a directory, not a video file")
    if os.path.getsize(name) == 0:
        raise VideoError(f"{name}: empty file")
    try:
        return av.open(name, metadata_errors="replace")
    except av.error.FFmpegError as exc:
        # PyAV's OS-level errors (permissions, I/O) subclass OSError as well;
        # everything else means FFmpeg did not recognise the content.
        what = "cannot read file" if isinstance(exc, OSError) else "not a video file"
        raise VideoError(f"{name}: {what} ({_reason(exc)})") from exc


def _open_input(path: PathLike) -> tuple[av.container.InputContainer, Any]:
    """Open a file and pick its video stream, or raise VideoError."""
    name = os.fspath(path)
    container = _open_media(name)
    stream = None
    if container.format.name != "tty":  # FFmpeg reads text files as ANSI art
        for candidate in container.streams.video:
            if not int(getattr(candidate, "disposition", 0)) & _ATTACHED_PIC:
                stream = candidate
                break
    if stream is None:
        kind = "audio only" if container.streams.audio else "no video stream"
        container.close()
        raise VideoError(f"{name}: not a video file ({kind})")
    # Let FFmpeg pick frame and/or slice threads: decoding is often the bottleneck.
    stream.thread_type = "AUTO"
    return container, stream


def _decoded(container: av.container.InputContainer, stream: Any, name: str) -> Iterator[Any]:
    """Decoded av.VideoFrames of `stream`; decoding failures become VideoError."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{name}: cannot decode video ({_reason(exc)})") from exc


def _rotation_cw(frame: Any, stream: Any) -> int:
    """Clockwise degrees (0/90/180/270) that turn the decoded frame upright.

    PyAV exposes the display matrix as ``frame.rotation``: the angle by which
    the matrix rotates the frame *counter-clockwise* (av_display_rotation_get).
    FFmpeg's autorotate displays the frame rotated by its negation, so a
    phone's portrait matrix (frame.rotation == -90) means "turn 90 clockwise".
    Flips in the matrix are ignored; phones do not write them.
    """
    ccw = getattr(frame, "rotation", None)
    if ccw is None:  # PyAV without frame.rotation: legacy 'rotate' tag is clockwise
        tag = stream.metadata.get("rotate", "0")
        try:
            ccw = -float(tag)
        except ValueError:
            ccw = 0
    return (-int(round(float(ccw) / 90.0)) * 90) % 360


def _frame_rate(stream: Any, name: str) -> Fraction:
    """Exact rational frame rate: average, else guessed, else the stream's base rate."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    raise VideoError(f"{name}: unknown frame rate")


def _to_rgb(frame: Any, width: int, height: int, rotation: int, luma: LumaRange | None = None) -> np.ndarray:
    """An upright uint8 RGB array of a decoded frame at the stream's first size;
    with a non-nominal `luma` span, its Y'CbCr codes mapped by that span."""
    if luma is not None and not luma.nominal:
        planes = frame.reformat(width=width, height=height, format="yuv444p").to_ndarray()
        rgb = yuv_to_rgb(planes, luma)
    else:
        extra = {}
        if frame.color_range:
            # PyAV's reformat assumes 'unspecified' range unless told, which
            # swscale treats as limited for plain yuv formats: pass the real one.
            extra["src_color_range"] = frame.color_range
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height, **extra)
    if rotation:
        rgb = np.rot90(rgb, k=-(rotation // 90))  # negative k turns clockwise
    return np.ascontiguousarray(rgb)


def source_luma(path: PathLike, frames: int = 9, spread: int = 8,
                until: float | None = None) -> tuple[np.ndarray, str] | None:
    """Y' planes of a limited-range Y'CbCr video, and its matrix ('bt601' or
    'bt709', as tagged): the first `frames` frames and one frame at each of
    `spread` points spread over its first `until` seconds (all of it when
    None; a seek lands on the keyframe before each point, and a file that
    cannot seek gives the first frames only). None for any other video (RGB,
    grey, full range), whose pixels have no headroom to keep."""
    name = os.fspath(path)
    container, stream = _open_input(name)
    try:
        first = list(itertools.islice(_decoded(container, stream, name), frames))
        if not first:
            return None
        fmt = first[0].format.name
        if not fmt.startswith(("yuv", "nv")) or fmt.startswith("yuvj") or int(first[0].color_range) == 2:
            return None
        matrix = "bt709" if int(first[0].colorspace) == 1 else "bt601"
        sampled = first + _spread_frames(container, stream, spread, until)
        return np.stack([f.reformat(width=first[0].width, height=first[0].height,
                                    format="yuv444p").to_ndarray()[0] for f in sampled]), matrix
    except av.error.FFmpegError as exc:
        raise VideoError(f"{name}: cannot convert a frame ({_reason(exc)})") from exc
    finally:
        container.close()


def _spread_frames(container: av.container.InputContainer, stream: Any, n: int, until: float | None) -> list[Any]:
    """One decoded frame after each of `n` seeks spread over the first `until`
    seconds of the stream (fewer where it cannot seek)."""
    duration = (float(stream.duration * stream.time_base) if stream.duration
                else container.duration / av.time_base if container.duration else None)
    if not duration or not n:
        return []
    span = min(duration, until) if until else duration
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    out = []
    for k in range(1, n + 1):
        try:
            container.seek(int((start + span * k / (n + 1)) / stream.time_base), stream=stream)
            frame = next(container.decode(stream), None)
        except av.error.FFmpegError:
            break
        if frame is None:
            break
        out.append(frame)
    return out


def probe(path: PathLike) -> VideoInfo:
    """Describe a video file: display size, exact frame rate, frame count, rotation.

    Decodes the first frame, because the rotation (display matrix) and the
    real decoded size are only reliably known from a frame.

    Raises:
        VideoError: missing, empty or unreadable file, or no video stream.
    """
    name = os.fspath(path)
    container, stream = _open_input(name)
    try:
        first = next(_decoded(container, stream, name), None)
        if first is None:
            raise VideoError(f"{name}: the video stream has no decodable frames")
        rotation = _rotation_cw(first, stream)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=name,
            width=width,
            height=height,
            fps=_frame_rate(stream, name),
            frames=stream.frames or None,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.codec.canonical_name,
        )
    finally:
        container.close()


def iter_frames(path: PathLike, luma: LumaRange | None = None) -> Iterator[np.ndarray]:
    """Yield the video's frames as upright uint8 RGB arrays of shape (H, W, 3).

    `luma`: the Y' span that RGB 0..1 stands for (`codec.luma_range`; None or
    nominal: the usual conversion, as players do).

    The frames come at the constant rate `probe().fps`: where timestamps skip
    slots the previous frame is repeated (the same array object), and a frame
    landing in a filled slot is dropped. Frames are decoded one at a time
    (constant memory). The file is opened
    when this is called, so bad input raises VideoError here, not at the first
    ``next()``. Every frame has the size of the first one (a mid-stream
    resolution change is scaled back), so the frames always stack.
    """
    name = os.fspath(path)
    container, stream = _open_input(name)
    return _rgb_frames(container, stream, name, luma)


def _rgb_frames(container: av.container.InputContainer, stream: Any, name: str,
                luma: LumaRange | None) -> Iterator[np.ndarray]:
    try:
        size = rotation = None
        rgb = None
        frames = _in_time_order(_decoded(container, stream, name))
        for frame, gap in _constant_rate(frames, _frame_rate(stream, name)):
            for _ in range(gap):  # the previous frame stays on screen through a gap
                yield rgb
            if size is None:
                # One rotation and size for the whole stream keeps shapes equal.
                size, rotation = (frame.width, frame.height), _rotation_cw(frame, stream)
            try:
                rgb = _to_rgb(frame, size[0], size[1], rotation, luma)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{name}: cannot convert a frame to RGB ({_reason(exc)})") from exc
            yield rgb
    finally:
        container.close()


_REORDER_WINDOW = 4  # frames held back to sort slightly out-of-order timestamps


def _in_time_order(frames: Iterator[Any]) -> Iterator[Any]:
    """Decoded frames sorted by timestamp within a small window (frames without one keep their place)."""
    held: list[tuple[float, int, Any]] = []
    for seq, frame in enumerate(frames):
        t = frame.time
        if t is None:
            while held:
                yield heapq.heappop(held)[2]
            yield frame
            continue
        heapq.heappush(held, (t, seq, frame))
        if len(held) > _REORDER_WINDOW:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


def _constant_rate(frames: Iterator[Any], fps: Fraction) -> Iterator[tuple[Any, int]]:
    """(frame, gap): the frames to show at a constant `fps`, as FFmpeg's cfr mode does.

    Each frame goes to the slot round((t - t0) * fps) of its timestamp t. A
    frame whose slot is already filled is dropped; a frame that skips slots
    comes with `gap` > 0, the number of times the previous frame must be
    repeated before it (an AVI's empty "repeat" packets, a variable-rate
    phone video). Frames without a timestamp take the next slot.
    """
    origin: float | None = None
    filled = 0
    for frame in frames:
        t = frame.time
        if t is None or origin is None:
            origin = t if origin is None else origin
            slot = filled
        else:
            slot = round((t - origin) * fps)
        if slot < filled:
            continue
        yield frame, (slot - filled if filled else 0)
        filled = slot + 1


def constant_rate_frames(frames: Iterator[Any], fps: Fraction) -> Iterator[Any]:
    """Decoded frames (PyAV) on the constant-rate timeline `iter_frames` gives:
    in time order, a frame repeated through the slots its successor skips, a
    frame landing in a filled slot dropped. For tools that need the source's
    own frames (not RGB) on the timeline the codec encodes (bench/rd.py)."""
    for frame, gap in _constant_rate(_in_time_order(frames), fps):
        for _ in range(gap):
            yield previous
        previous = frame
        yield frame


def clip_length(n: int, stride: int) -> int:
    """The smallest ``1 + stride*k`` (k >= 0) that is at least ``n``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if n <= 1:
        return 1
    return 1 + stride * -(-(n - 1) // stride)


def read_clips(
    path: PathLike, clip_frames: int = 17, temporal_stride: int = 4, max_frames: int | None = None,
    luma: LumaRange | None = None, cuts: SceneCuts | None = None,
) -> ClipStream:
    """Stream the video as consecutive, non-overlapping clips of ``clip_frames`` frames.

    With ``max_frames``, only the first ``max_frames`` frames are read;
    ``luma`` is `iter_frames`'s. With ``cuts`` (a fresh `SceneCuts`), a
    clip also ends before a frame that starts a new scene, which begins the
    next clip. A caller that ends a clip before its last frame hands the
    rest back (`ClipStream.give_back`), and they begin the next clip.

    ``clip_frames`` must be ``1 + temporal_stride*k`` (the causal tokenizer's
    shape). A clip with fewer frames (the last, or one ended by a cut) is
    padded by repeating its last frame up to ``clip_length(valid,
    temporal_stride)`` (not to ``clip_frames``). Memory is bounded by one clip.

    Raises:
        ValueError: ``clip_frames`` or ``temporal_stride`` is not a valid shape.
        VideoError: the file is not a readable video (raised at the call).
    """
    if temporal_stride < 1:
        raise ValueError(f"temporal_stride must be >= 1, got {temporal_stride}")
    if clip_frames < 1 or (clip_frames - 1) % temporal_stride:
        raise ValueError(
            f"clip_frames must be 1 + {temporal_stride}*k (e.g. {clip_length(clip_frames, temporal_stride)}), "
            f"got {clip_frames}"
        )
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    return ClipStream(itertools.islice(iter_frames(path, luma), max_frames), clip_frames, temporal_stride, cuts)


class ClipStream(Iterator[Clip]):
    """`read_clips`'s clips, in order; `give_back` returns the end of the clip just taken."""

    def __init__(self, frames: Iterator[np.ndarray], clip_frames: int, stride: int, cuts: SceneCuts | None):
        self._returned: np.ndarray | None = None  # frames handed back, to begin the next clip
        self._stride = stride
        self._clips = self._read(frames, clip_frames, stride, cuts)

    def __next__(self) -> Clip:
        return next(self._clips)

    def give_back(self, clip: Clip, keep: int) -> Clip:
        """Keep only the first `keep` frames of `clip` (the clip just taken; 0 < keep < its valid
        frames): the others begin the next clip. Returns the clip cut to `keep` frames, padded as a
        short clip is."""
        if not 0 < keep < clip.valid or self._returned is not None:
            raise ValueError(f"cannot keep {keep} of a clip's {clip.valid} frames")
        self._returned = clip.frames[keep: clip.valid].copy()
        return _padded(clip.frames[: clip_length(keep, self._stride)].copy(), keep, clip.start, self._stride)

    def _read(self, frames: Iterator[np.ndarray], clip_frames: int, stride: int,
              cuts: SceneCuts | None) -> Iterator[Clip]:
        buf: np.ndarray | None = None
        filled = start = 0

        def taken() -> Clip:  # the buffer's clip; the next begins after it
            nonlocal buf, filled, start
            clip = (Clip(frames=buf, start=start, valid=filled) if filled == clip_frames
                    else _padded(buf, filled, start, stride))
            buf, start, filled = None, start + filled, 0
            return clip

        def returned_first() -> None:  # frames handed back of the clip just taken begin the next
            nonlocal buf, filled, start
            back, self._returned = self._returned, None
            if back is not None:
                buf = np.empty((clip_frames, *back.shape[1:]), dtype=np.uint8)
                buf[: len(back)] = back
                filled = len(back)
                start -= filled

        def flush() -> Iterator[Clip]:  # a short clip, then any frames handed back of it, and so on
            while buf is not None and filled:
                yield taken()
                returned_first()

        for frame in frames:
            if cuts is not None and cuts.is_cut(frame) and filled:
                yield from flush()  # the frames before the cut
            if buf is None:
                # A fresh array per clip: the caller may keep the previous one.
                buf = np.empty((clip_frames, *frame.shape), dtype=np.uint8)
            buf[filled] = frame
            filled += 1
            if filled == clip_frames:
                yield taken()
                returned_first()
        yield from flush()


def _padded(buf: np.ndarray, filled: int, start: int, stride: int) -> Clip:
    """A clip of the first `filled` frames of `buf`, the last repeated up to a length the tokenizer takes."""
    clip = buf[: clip_length(filled, stride)]
    clip[filled:] = clip[filled - 1]
    return Clip(frames=clip, start=start, valid=filled)
