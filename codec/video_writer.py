"""Writing videos: H.264 mp4s, written atomically, with audio carried along.

Writing goes to a temporary file beside the target that is renamed into
place only when the file is complete, so a failure never leaves a
half-written file.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from .audio import AudioPacketData, AudioStreamInfo, _AudioFeed, _FileAudio, _GivenAudio
from .luma_range import LumaRange, rgb_to_yuv
from .video_reader import PathLike, VideoError, _reason

# ---------------------------------------------------------------- writing


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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

    ``luma``: a non-nominal `codec.luma_range.LumaRange` says the frames are
    codec RGB in that Y' span (a source with super-whites): they are turned
    back into the same Y'CbCr codes (`rgb_to_yuv`) and written tagged with the
    span's matrix and limited range, super-whites kept; ``lossless`` then
    writes 4:4:4 Y'CbCr at qp 0, whose Y' is exactly those codes.

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
        luma: LumaRange | None = None,
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
        self._luma = luma if luma is not None and not luma.nominal else None
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
        even = self.width % 2 == 0 and self.height % 2 == 0
        if lossless and self._luma is None:
            stream = self._output.add_stream("libx264rgb", rate=self.fps, options={"qp": "0", "preset": "medium"})
            stream.pix_fmt = "rgb24"
        else:
            options = {"qp": "0"} if lossless else {"crf": str(crf)}
            stream = self._output.add_stream("libx264", rate=self.fps, options={**options, "preset": "medium"})
            stream.pix_fmt = "yuv420p" if even and not lossless else "yuv444p"
            # Tag what we convert with, so players and our reader agree.
            cc = stream.codec_context
            # BT.709 (1) for our own conversion; a kept span keeps its source's matrix (SMPTE 170M: 6).
            cc.colorspace = cc.color_primaries = cc.color_trc = 6 if self._luma and self._luma.matrix == "bt601" else 1
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
        if self._luma is not None:
            vframe = av.VideoFrame.from_ndarray(rgb_to_yuv(frame, self._luma), format="yuv444p")
            vframe.color_range = 1  # so that swscale only resamples the chroma for 4:2:0
            if self._stream.pix_fmt != "yuv444p":
                vframe = vframe.reformat(format=self._stream.pix_fmt)
        else:
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
