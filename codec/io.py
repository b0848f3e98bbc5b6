"""Video file I/O: probe a file, stream its frames or clips, write H.264 mp4s.

Everything goes through PyAV (FFmpeg's libraries). Reading decodes one frame
at a time, so memory is bounded by one clip whatever the length of the video.
Writing goes to a temporary file beside the target that is renamed into place
only when the file is complete, so a failure never leaves a half-written file.

Bad input is reported as :class:`VideoError` with a one-line message naming
the file; PyAV's own exceptions never escape the reading functions.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Union

import av
import av.error
import numpy as np

__all__ = [
    "VideoError",
    "VideoInfo",
    "probe",
    "iter_frames",
    "Clip",
    "clip_length",
    "read_clips",
    "VideoWriter",
    "write_video",
]

PathLike = Union[str, "os.PathLike[str]"]

# AV_DISPOSITION_ATTACHED_PIC: cover art in music files is a one-frame "video"
# stream; an mp3 with a cover is still an audio-only file to us.
_ATTACHED_PIC = 0x400

# Audio codecs that mp4 players handle, so they are stream-copied; anything
# else (PCM, Vorbis, ...) is transcoded to AAC rather than risk an mp4 that
# the muxer accepts but players reject.
_COPYABLE_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})


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


def _to_rgb(frame: Any, width: int, height: int, rotation: int) -> np.ndarray:
    """An upright uint8 RGB array of a decoded frame at the stream's first size."""
    extra = {}
    if frame.color_range:
        # PyAV's reformat assumes 'unspecified' range unless told, which
        # swscale treats as limited for plain yuv formats: pass the real one.
        extra["src_color_range"] = frame.color_range
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, **extra)
    if rotation:
        rgb = np.rot90(rgb, k=-(rotation // 90))  # negative k turns clockwise
    return np.ascontiguousarray(rgb)


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


def iter_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Yield the video's frames as upright uint8 RGB arrays of shape (H, W, 3).

    Frames are decoded one at a time (constant memory). The file is opened
    when this is called, so bad input raises VideoError here, not at the first
    ``next()``. Every frame has the size of the first one (a mid-stream
    resolution change is scaled back), so the frames always stack.
    """
    name = os.fspath(path)
    container, stream = _open_input(name)
    return _rgb_frames(container, stream, name)


def _rgb_frames(container: av.container.InputContainer, stream: Any, name: str) -> Iterator[np.ndarray]:
    try:
        size = rotation = None
        for frame in _decoded(container, stream, name):
            if size is None:
                # One rotation and size for the whole stream keeps shapes equal.
                size, rotation = (frame.width, frame.height), _rotation_cw(frame, stream)
            try:
                rgb = _to_rgb(frame, size[0], size[1], rotation)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{name}: cannot convert a frame to RGB ({_reason(exc)})") from exc
            yield rgb
    finally:
        container.close()


def clip_length(n: int, stride: int) -> int:
    """The smallest ``1 + stride*k`` (k >= 0) that is at least ``n``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if n <= 1:
        return 1
    return 1 + stride * -(-(n - 1) // stride)


def read_clips(path: PathLike, clip_frames: int = 17, temporal_stride: int = 4) -> Iterator[Clip]:
    """Stream the video as consecutive, non-overlapping clips of ``clip_frames`` frames.

    ``clip_frames`` must be ``1 + temporal_stride*k`` (the causal tokenizer's
    shape). The last clip holds the remaining frames, padded by repeating its
    last frame up to ``clip_length(valid, temporal_stride)`` (not to
    ``clip_frames``). Memory is bounded by one clip.

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
    return _clips(iter_frames(path), clip_frames, temporal_stride)


def _clips(frames: Iterator[np.ndarray], clip_frames: int, stride: int) -> Iterator[Clip]:
    buf: np.ndarray | None = None
    filled = start = 0
    for frame in frames:
        if buf is None:
            # A fresh array per clip: the caller may keep the previous one.
            buf = np.empty((clip_frames, *frame.shape), dtype=np.uint8)
        buf[filled] = frame
        filled += 1
        if filled == clip_frames:
            yield Clip(frames=buf, start=start, valid=filled)
            buf, filled, start = None, 0, start + clip_frames
    if buf is not None and filled:
        clip = buf[: clip_length(filled, stride)]
        clip[filled:] = clip[filled - 1]
        yield Clip(frames=clip, start=start, valid=filled)


# ---------------------------------------------------------------- writing


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _AudioFeed:
    """Moves the audio of another file into the output, a little at a time.

    Packets are stream-copied when the codec plays in mp4, else decoded and
    re-encoded as AAC. ``pump(t)`` muxes everything up to ``t`` seconds, so
    the audio is interleaved with the video as it is written, never buffered
    whole.
    """

    def __init__(self, source: PathLike, output: av.container.OutputContainer) -> None:
        self.stream = self._encoder = self._pending = self._next_sample = None
        self._input = _open_media(source)
        try:
            self._setup(output)
        except BaseException:
            self._input.close()
            raise

    def _setup(self, output: av.container.OutputContainer) -> None:
        if not self._input.streams.audio:
            self._input.close()
            self._input = None
            return
        src = self._src = self._input.streams.audio[0]
        # Our video starts at the source's first video frame: shift audio by that.
        video = self._input.streams.video
        start = video[0].start_time if video else None
        self._shift = 0 if start is None else int(round(start * video[0].time_base / src.time_base))
        if src.codec_context.codec.canonical_name in _COPYABLE_AUDIO:
            try:
                self.stream = output.add_stream_from_template(src)
            except ValueError:  # the muxer refuses this codec after all
                self.stream = None
        if self.stream is None:
            self.stream = self._encoder = output.add_stream("aac", rate=src.rate)
            # PCM in WAV often has an unnamed "1 channels" layout that the AAC
            # encoder refuses; mono stays mono, anything wider is downmixed
            # to stereo by PyAV's resampler.
            self._encoder.layout = "mono" if src.layout.nb_channels == 1 else "stereo"
        self._packets = self._input.demux(src)

    def _next_packet(self) -> Any:
        """The next source packet with timestamps moved to the output's timeline."""
        packet = next(self._packets, None)
        if packet is not None and packet.pts is not None:
            packet.pts -= self._shift
            if packet.dts is not None:
                packet.dts -= self._shift
        return packet

    def pump(self, output: av.container.OutputContainer, until: float | None) -> None:
        """Mux source audio up to ``until`` seconds (all that is left if None)."""
        if self._input is None:
            return
        while True:
            if self._pending is None:
                self._pending = self._next_packet()
                if self._pending is None:
                    return
            packet = self._pending
            if until is not None and packet.pts is not None and packet.pts * packet.time_base >= until:
                return  # not due yet; keep it for the next call
            self._pending = None
            self._mux(output, packet)

    def _mux(self, output: av.container.OutputContainer, packet: Any) -> None:
        if self._encoder is None:
            if packet.size:  # skip the empty flush packet that demux() ends with
                packet.stream = self.stream
                output.mux(packet)
            return
        for frame in self._src.decode(packet):
            # Count samples from the first frame's time instead of trusting
            # each frame's pts: containers like WebM store milliseconds, and
            # the rounding would make the AAC frames overlap or leave gaps.
            if self._next_sample is None:
                start = frame.pts * frame.time_base if frame.pts is not None else 0
                self._next_sample = int(round(start * frame.sample_rate))
            frame.pts, frame.time_base = self._next_sample, Fraction(1, frame.sample_rate)
            self._next_sample += frame.samples
            output.mux(self._encoder.encode(frame))

    def finish(self, output: av.container.OutputContainer, end: float) -> None:
        """Mux the audio that plays before ``end`` seconds and flush the encoder.

        Audio beyond the end of the video is dropped (at most one packet
        overhangs), so a clip cut from a longer source gets matching sound.
        """
        self.pump(output, end)
        if self._encoder is not None:
            output.mux(self._encoder.encode(None))
        self.close()

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None


class VideoWriter:
    """Context manager that writes an mp4 (H.264) atomically.

    Frames go to a temporary file beside ``path`` (``.name.tmp-XXXX.mp4``)
    that replaces ``path`` on :meth:`close`; :meth:`abort` (or an exception
    inside the ``with`` block) removes it and leaves ``path`` untouched.

    Normal mode: libx264, ``crf`` (default 18, visually near-transparent),
    preset medium, BT.709 limited range; 4:2:0 for even sizes (plays
    everywhere) and 4:4:4 for odd ones, since 4:2:0 cannot represent an odd
    width or height and cropping is in 2-pixel units. ``lossless=True``: RGB
    with libx264rgb at qp 0, decoded back bit-exactly (High 4:4:4 profile;
    many browsers will not play it).

    ``audio_from``: a file whose first audio track is copied into the output
    (or transcoded to AAC if mp4 players cannot take its codec). A file
    without audio adds no track.
    """

    def __init__(
        self,
        path: PathLike,
        fps: Fraction | int | float,
        width: int,
        height: int,
        *,
        lossless: bool = False,
        crf: int = 18,
        audio_from: PathLike | None = None,
    ) -> None:
        fps = Fraction(fps).limit_denominator(1_000_000)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"width and height must be >= 1, got {width}x{height}")
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        self.path = os.fspath(path)
        self.fps, self.width, self.height = fps, int(width), int(height)
        self.frames_written = 0
        self._audio: _AudioFeed | None = None
        self._output = None
        directory, base = os.path.split(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=".mp4", dir=directory)
        os.close(fd)
        # If the writer is dropped without close() or abort(), delete the temp file.
        self._cleanup = weakref.finalize(self, _remove_quietly, self._tmp)
        try:
            self._open(lossless, int(crf), audio_from)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, av.error.FFmpegError):
                raise VideoError(f"{self.path}: cannot start writing ({_reason(exc)})") from exc
            raise

    def _open(self, lossless: bool, crf: int, audio_from: PathLike | None) -> None:
        # faststart moves the index to the front so players can start streaming.
        self._output = av.open(self._tmp, "w", format="mp4", options={"movflags": "+faststart"})
        if lossless:
            stream = self._output.add_stream("libx264rgb", rate=self.fps, options={"qp": "0", "preset": "medium"})
            stream.pix_fmt = "rgb24"
        else:
            stream = self._output.add_stream("libx264", rate=self.fps, options={"crf": str(crf), "preset": "medium"})
            even = self.width % 2 == 0 and self.height % 2 == 0
            stream.pix_fmt = "yuv420p" if even else "yuv444p"
            # Tag what we convert with, so players and our reader agree.
            cc = stream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
            cc.color_range = 1  # limited ("tv") range
        stream.width, stream.height = self.width, self.height
        # One tick per frame: the muxer then stores exact durations, and the
        # reader recovers the same Fraction (e.g. 30000/1001) and frame count.
        stream.time_base = 1 / self.fps
        self._stream = stream
        if audio_from is not None:
            feed = _AudioFeed(audio_from, self._output)
            self._audio = feed if feed.stream is not None else None  # no audio there

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame of shape (height, width, 3)."""
        if self._output is None:
            raise ValueError(f"{self.path}: writer is closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"expected a uint8 frame of shape {(self.height, self.width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        vframe = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self._stream.pix_fmt != "rgb24":
            vframe = vframe.reformat(format=self._stream.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        vframe.pts = self.frames_written
        try:
            if self._audio is not None:
                self._audio.pump(self._output, float((self.frames_written + 1) / self.fps))
            self._output.mux(self._stream.encode(vframe))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot write video ({_reason(exc)})") from exc
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the audio, and move the file into place."""
        if self._output is None:
            return
        try:
            self._output.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self._output, float(self.frames_written / self.fps))
            self._output.close()
            self._output = None
            # mkstemp made the file 0600; give it the permissions a new file gets.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)
            os.replace(self._tmp, self.path)
            self._cleanup.detach()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, av.error.FFmpegError):
                raise VideoError(f"{self.path}: cannot finish writing ({_reason(exc)})") from exc
            raise

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._output is not None:
            try:
                self._output.close()
            except av.error.FFmpegError:
                pass  # the file is being thrown away anyway
            self._output = None
        self._cleanup()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: Fraction | int, **kwargs: Any) -> int:
    """Write uint8 RGB frames to an mp4 atomically; returns the number of frames written.

    The size is taken from the first frame; ``kwargs`` go to :class:`VideoWriter`.
    """
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"{os.fspath(path)}: no frames to write")
    first = np.asarray(first)
    if first.ndim != 3:
        raise ValueError(f"expected (H, W, 3) frames, got shape {first.shape}")
    height, width = first.shape[:2]
    with VideoWriter(path, fps, width, height, **kwargs) as writer:
        writer.write(first)
        for frame in iterator:
            writer.write(frame)
    return writer.frames_written
