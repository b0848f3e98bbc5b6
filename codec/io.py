"""Video file I/O: probe a file, stream its frames or clips, write H.264 mp4s.

Audio is carried along: :func:`audio_stream_info` and :func:`iter_audio_packets`
take a file's compressed audio packets out (to store them elsewhere, e.g. in a
``.tok``), and :class:`VideoWriter` puts audio from a file or from such
packets into the mp4.

Everything goes through PyAV (FFmpeg's libraries). Reading decodes one frame
at a time, so memory is bounded by one clip whatever the length of the video.
Writing goes to a temporary file beside the target that is renamed into place
only when the file is complete, so a failure never leaves a half-written file.

Bad input is reported as :class:`VideoError` with a one-line message naming
the file; PyAV's own exceptions never escape the reading functions.
"""

from __future__ import annotations

import io
import math
import itertools
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
    "AudioStreamInfo",
    "AudioPacketData",
    "audio_stream_info",
    "iter_audio_packets",
    "audio_packets_decodable",
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


def read_clips(
    path: PathLike, clip_frames: int = 17, temporal_stride: int = 4, max_frames: int | None = None
) -> Iterator[Clip]:
    """Stream the video as consecutive, non-overlapping clips of ``clip_frames`` frames.

    With ``max_frames``, only the first ``max_frames`` frames are read.

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
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    return _clips(itertools.islice(iter_frames(path), max_frames), clip_frames, temporal_stride)


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


# ---------------------------------------------------------------- audio packets


@dataclass(frozen=True)
class AudioStreamInfo:
    """What it takes to decode or remux an audio stream's packets without its file.

    :func:`audio_stream_info` reads it from a media file; ``VideoWriter(...,
    audio_packets=(info, packets))`` rebuilds the stream from it.
    """

    codec: str  # FFmpeg codec name, e.g. "aac", "vorbis", "pcm_s16le" (not a decoder name like "mp3float")
    rate: int  # sample rate in Hz
    layout: str  # channel layout name, e.g. "mono", "stereo", "5.1", or "3 channels" if unnamed
    time_base: Fraction  # unit of the packets' pts and duration
    extradata: bytes  # codec extradata (AudioSpecificConfig, Vorbis headers, ...); b"" if none


@dataclass(frozen=True)
class AudioPacketData:
    """One compressed audio packet, as :func:`iter_audio_packets` demuxes it."""

    pts: int  # presentation time in AudioStreamInfo.time_base units (0 = the video's first frame)
    duration: int  # in time_base units; 0 if the container does not say
    data: bytes  # the compressed bytes, exactly as demuxed


def _open_audio(path: PathLike) -> tuple[av.container.InputContainer, Any]:
    """Open a media file and pick its first audio stream (None if it has none)."""
    name = os.fspath(path)
    container = _open_media(name)
    if container.format.name == "tty":  # FFmpeg reads text files as ANSI art
        container.close()
        raise VideoError(f"{name}: not a video file (plain text)")
    return container, (container.streams.audio[0] if container.streams.audio else None)


def _stream_info(stream: Any, name: str) -> AudioStreamInfo:
    ctx = stream.codec_context
    if ctx is None:  # FFmpeg knows the container but has no decoder for the codec
        raise VideoError(f"{name}: unsupported audio codec")
    return AudioStreamInfo(
        codec=ctx.codec.canonical_name,
        rate=int(ctx.sample_rate),
        layout=ctx.layout.name,
        time_base=Fraction(stream.time_base),
        extradata=bytes(ctx.extradata or b""),
    )


def _video_start(container: av.container.InputContainer, audio: Any) -> int:
    """The first video frame's time in ``audio`` time base units (0 without video).

    Our video starts at the source's first video frame, so audio timestamps
    are moved back by this much to stay in sync with it.
    """
    video = [s for s in container.streams.video if not int(getattr(s, "disposition", 0)) & _ATTACHED_PIC]
    start = video[0].start_time if video else None
    return 0 if start is None else int(round(start * video[0].time_base / audio.time_base))


def _demuxed(container: av.container.InputContainer, stream: Any, name: str) -> Iterator[Any]:
    """The stream's av.Packets in file order, timed from the first video frame.

    Empty packets (the flush packet demux() ends with) and packets without a
    pts (nowhere to put them) are skipped. Demuxing errors become VideoError.
    """
    shift = _video_start(container, stream)
    try:
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            yield packet
    except av.error.FFmpegError as exc:
        raise VideoError(f"{name}: cannot read audio ({_reason(exc)})") from exc


def audio_stream_info(path: PathLike) -> AudioStreamInfo | None:
    """Describe the first audio stream of a media file, or None if it has no audio.

    Raises:
        VideoError: missing, empty, unreadable or unrecognised file.
    """
    name = os.fspath(path)
    container, stream = _open_audio(name)
    try:
        return None if stream is None else _stream_info(stream, name)
    finally:
        container.close()


def iter_audio_packets(path: PathLike) -> Iterator[AudioPacketData]:
    """Yield the compressed packets of the file's first audio stream, in file order.

    Nothing is decoded and one packet is held at a time (constant memory).
    Timestamps are in :func:`audio_stream_info`'s ``time_base`` and measured
    from the file's first video frame (the frame :func:`iter_frames` yields
    first), so pts 0 plays with video frame 0; packets from before it (e.g. an
    AAC encoder's priming packet) have a negative pts. Empty packets and
    packets without a pts are skipped. A file without audio yields nothing.

    The file is opened when this is called, so bad input raises VideoError
    here, not at the first ``next()``.
    """
    name = os.fspath(path)
    container, stream = _open_audio(name)
    if stream is None:
        container.close()
        return iter(())
    try:
        _stream_info(stream, name)  # an undecodable codec fails here, not half way
    except BaseException:
        container.close()
        raise
    return _packet_data(container, stream, name)


def _packet_data(container: av.container.InputContainer, stream: Any, name: str) -> Iterator[AudioPacketData]:
    try:
        for packet in _demuxed(container, stream, name):
            yield AudioPacketData(pts=int(packet.pts), duration=int(packet.duration or 0), data=bytes(packet))
    finally:
        container.close()


# ---------------------------------------------------------------- writing


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _FileAudio:
    """Audio source: the first audio stream of a media file, demuxed as needed."""

    def __init__(self, path: PathLike) -> None:
        name = os.fspath(path)
        self._input, self._stream = _open_audio(name)
        self.info: AudioStreamInfo | None = None
        self.packets: Iterator[Any] = iter(())
        if self._stream is not None:
            try:
                self.info = _stream_info(self._stream, name)
            except BaseException:
                self.close()
                raise
            self.packets = _demuxed(self._input, self._stream, name)

    def copy_stream(self, output: av.container.OutputContainer) -> Any:
        """An output stream for stream-copied packets (ValueError if the muxer refuses)."""
        return output.add_stream_from_template(self._stream)

    def decoder(self) -> Any:
        return self._stream.codec_context

    def close(self) -> None:
        self._input.close()


class _GivenAudio:
    """Audio source: packets handed over with their stream description (e.g. from a .tok)."""

    def __init__(self, info: AudioStreamInfo, packets: Iterable[AudioPacketData]) -> None:
        if not isinstance(info, AudioStreamInfo):
            raise TypeError(f"audio_packets must be (AudioStreamInfo, packets), got {type(info).__name__}")
        # Check everything that could fail later, before any stream is added.
        try:
            av.Codec(info.codec, "r")
            av.AudioLayout(info.layout)
        except ValueError as exc:  # UnknownCodecError is a ValueError too
            raise VideoError(f"audio stream: {_reason(exc)}") from exc
        if info.rate <= 0 or info.time_base <= 0:
            raise VideoError(f"audio stream: bad rate {info.rate} or time base {info.time_base}")
        self.info: AudioStreamInfo | None = info
        self._given = iter(packets)
        self.packets = self._packets()

    def _packets(self) -> Iterator[Any]:
        time_base = Fraction(self.info.time_base)
        for data in self._given:
            if not data.data or data.pts is None:
                continue
            packet = av.Packet(data.data)
            packet.pts = packet.dts = int(data.pts)
            packet.duration = int(data.duration or 0)
            packet.time_base = time_base
            yield packet

    def copy_stream(self, output: av.container.OutputContainer) -> Any:
        """An output stream for stream-copied packets, built from the description.

        PyAV cannot set a stream's extradata directly, but a stream made from
        a template gets its codec parameters from its (never opened) codec
        context when the header is written; the template itself comes from a
        scratch container, so the output gains only the one stream.
        """
        info = self.info
        scratch = av.open(io.BytesIO(), "w", format=output.format.name)
        try:
            template = scratch.add_stream(info.codec, rate=int(info.rate))  # needs an encoder to exist
            stream = output.add_stream_from_template(template)
        finally:
            scratch.close()
        ctx = stream.codec_context
        ctx.sample_rate = int(info.rate)
        ctx.layout = info.layout
        ctx.extradata = info.extradata or None
        stream.time_base = info.time_base
        return stream

    def decoder(self) -> Any:
        info = self.info
        ctx = av.CodecContext.create(info.codec, "r")
        ctx.sample_rate = int(info.rate)
        ctx.layout = info.layout
        if info.extradata:
            ctx.extradata = info.extradata
        try:
            ctx.open()  # fail now, not at the first packet
        except av.error.FFmpegError as exc:
            # e.g. ADPCM IMA WAV needs the block size, which the description lacks
            raise VideoError(f"audio stream: cannot decode {info.codec} ({_reason(exc)})") from exc
        return ctx

    def close(self) -> None:
        close = getattr(self._given, "close", None)
        if close is not None:  # a generator (e.g. iter_audio_packets): release its file now
            close()


def audio_packets_decodable(info: AudioStreamInfo) -> bool:
    """Whether packets described only by `info` can be decoded again.

    A few codecs (ADPCM IMA WAV, probably WMA) need fields that
    AudioStreamInfo does not carry, so their packets cannot be stored apart
    from their source file.
    """
    try:
        _GivenAudio(info, ()).decoder()
    except (VideoError, av.error.FFmpegError, ValueError):
        return False
    return True


def _from_start(packets: Iterator[Any], cut: int) -> Iterator[Any]:
    """Packets moved ``cut`` ticks earlier, without those that end before the new 0.

    The last dropped packet is kept as pre-roll (decoders need the previous
    packet to rebuild the first samples), so the stream starts at a small
    negative time; the mp4 muxer writes an edit list that hides it, and a
    source's own priming packet (AAC's at -1024) is kept the same way.
    """
    previous = None
    packets = iter(packets)
    for packet in packets:
        packet.pts -= cut
        if packet.dts is not None:
            packet.dts -= cut
        if packet.pts + (packet.duration or 0) > 0:
            if previous is not None:
                yield previous
            yield packet
            break
        previous = packet
    for packet in packets:
        packet.pts -= cut
        if packet.dts is not None:
            packet.dts -= cut
        yield packet


# Consecutive undecodable packets tolerated before a transcode gives up: a
# damaged packet here and there loses a few ms of sound, but a stream that
# does not decode at all must fail rather than write a silent track.
_MAX_BAD_AUDIO_PACKETS = 16


class _AudioFeed:
    """Moves audio from a source (a file or given packets) into the output, a little at a time.

    Packets are stream-copied when the codec plays in mp4, else decoded and
    re-encoded as AAC. ``pump(t)`` muxes everything up to ``t`` seconds, so
    the audio is interleaved with the video as it is written, never buffered
    whole. ``start`` seconds of the source's audio are skipped (see
    :class:`VideoWriter`'s ``audio_start``).
    """

    def __init__(
        self, source: _FileAudio | _GivenAudio, output: av.container.OutputContainer, start: float = 0.0
    ) -> None:
        self.stream = self._encoder = self._decoder = self._pending = self._next_sample = None
        self._bad = 0
        self._source: _FileAudio | _GivenAudio | None = source
        try:
            self._setup(output, start)
        except BaseException:
            self.close()
            raise

    def _setup(self, output: av.container.OutputContainer, start: float) -> None:
        info = self._source.info
        if info is None:  # no audio there
            self.close()
            return
        if info.codec in _COPYABLE_AUDIO:
            try:
                self.stream = self._source.copy_stream(output)
            except ValueError:  # the muxer (or PyAV) refuses this codec after all
                self.stream = None
        if self.stream is None:
            self._decoder = self._source.decoder()
            self.stream = self._encoder = output.add_stream("aac", rate=int(info.rate))
            # PCM in WAV often has an unnamed "1 channels" layout that the AAC
            # encoder refuses; mono stays mono, anything wider is downmixed
            # to stereo by PyAV's resampler.
            self._encoder.layout = "mono" if av.AudioLayout(info.layout).nb_channels == 1 else "stereo"
        cut = round(Fraction(start) / Fraction(info.time_base))
        self._packets = _from_start(self._source.packets, cut)

    def pump(self, output: av.container.OutputContainer, until: float | None) -> None:
        """Mux source audio up to ``until`` seconds (all that is left if None)."""
        if self._source is None:
            return
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            packet = self._pending
            if until is not None and packet.pts * packet.time_base >= until:
                return  # not due yet; keep it for the next call
            self._pending = None
            self._mux(output, packet)

    def _mux(self, output: av.container.OutputContainer, packet: Any) -> None:
        if self._encoder is None:
            packet.stream = self.stream
            output.mux(packet)
            return
        try:
            frames = self._decoder.decode(packet)
        except av.error.InvalidDataError:
            self._bad += 1
            if self._bad >= _MAX_BAD_AUDIO_PACKETS:
                raise
            return  # a damaged packet: skip it, as ffmpeg does
        self._bad = 0
        self._encode(output, frames)

    def _encode(self, output: av.container.OutputContainer, frames: list[Any]) -> None:
        for frame in frames:
            # Count samples from the first frame's time instead of trusting
            # each frame's pts: containers like WebM store milliseconds, and
            # the rounding would make the AAC frames overlap or leave gaps.
            if self._next_sample is None:
                start = frame.pts * frame.time_base if frame.pts is not None and frame.time_base else 0
                self._next_sample = int(round(start * frame.sample_rate))
            frame.pts, frame.time_base = self._next_sample, Fraction(1, frame.sample_rate)
            self._next_sample += frame.samples
            output.mux(self._encoder.encode(frame))

    def finish(self, output: av.container.OutputContainer, end: float) -> None:
        """Mux the audio that plays before ``end`` seconds and flush the codecs.

        Audio beyond the end of the video is dropped (at most one packet
        overhangs), so a clip cut from a longer source gets matching sound.
        """
        self.pump(output, end)
        if self._encoder is not None:
            if self._source is not None:
                self._encode(output, self._decoder.decode(None))
            output.mux(self._encoder.encode(None))
        self.close()

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


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
    (or transcoded to AAC if mp4 players cannot take its codec), timed so
    that the file's first video frame plays at 0. A file without audio adds
    no track.

    ``audio_packets``: ``(info, packets)`` as :func:`audio_stream_info` and
    :func:`iter_audio_packets` give them (e.g. stored in a ``.tok``), used
    exactly like ``audio_from`` but without the file; ``packets`` is pulled
    lazily as the video advances, and closed at the end if it is a generator.
    At most one of ``audio_from`` and ``audio_packets`` may be given.

    Either way the audio is interleaved with the video and cut where the
    video ends (to within one packet).

    ``audio_start``: seconds of source audio to skip, for a video that starts
    ``audio_start`` seconds into the source (e.g. decoding frames N.. of a
    ``.tok``: ``audio_start = N / fps``): the audio at ``audio_start`` plays
    at time 0. Packets are not cut, so one packet of pre-roll before that
    point (and the packet that straddles it) is kept at a negative time; the
    mp4's edit list hides it from players that honour edit lists (FFmpeg,
    browsers, QuickTime), which then start at the exact sample. Others play up
    to a packet or two (~20-60 ms) of earlier sound first. A transcoded
    track is re-encoded from that same pre-roll, with the same result.
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
        audio_packets: tuple[AudioStreamInfo, Iterable[AudioPacketData]] | None = None,
        audio_start: float = 0.0,
    ) -> None:
        if audio_from is not None and audio_packets is not None:
            raise ValueError("give audio_from or audio_packets, not both")
        if not (math.isfinite(audio_start) and audio_start >= 0):
            raise ValueError(f"audio_start must be a finite number of seconds >= 0, got {audio_start}")
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
            self._open(lossless, int(crf))
            if audio_from is not None or audio_packets is not None:
                self._add_audio(audio_from, audio_packets, float(audio_start))
        except BaseException as exc:
            self.abort()
            if isinstance(exc, av.error.FFmpegError):
                raise VideoError(f"{self.path}: cannot start writing ({_reason(exc)})") from exc
            raise

    def _open(self, lossless: bool, crf: int) -> None:
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

    def _add_audio(
        self,
        audio_from: PathLike | None,
        audio_packets: tuple[AudioStreamInfo, Iterable[AudioPacketData]] | None,
        start: float,
    ) -> None:
        if audio_from is not None:
            # Errors name the source file (_open_media, _demuxed).
            feed = _AudioFeed(_FileAudio(audio_from), self._output, start)
        else:
            info, packets = audio_packets
            try:
                feed = _AudioFeed(_GivenAudio(info, packets), self._output, start)
            except VideoError as exc:  # given packets name no file: name the output
                raise VideoError(f"{self.path}: cannot start writing ({exc})") from exc
        self._audio = feed if feed.stream is not None else None  # None: no audio there

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
