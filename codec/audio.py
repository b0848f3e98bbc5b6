"""Audio packets: take a file's compressed audio out, and feed it into a writer.

`audio_stream_info` and `iter_audio_packets` lift the packets out (to store
them elsewhere, e.g. in a .tok); `_AudioFeed` interleaves packets from a file
or from such a list into an mp4 that VideoWriter is writing, stream-copying
what mp4 players take and transcoding the rest to AAC.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error

from .video_reader import _ATTACHED_PIC, PathLike, VideoError, _open_media, _reason


# Audio codecs that mp4 players handle, so they are stream-copied; anything
# else (PCM, Vorbis, ...) is transcoded to AAC rather than risk an mp4 that
# the muxer accepts but players reject.
_COPYABLE_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
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
