"""Tests for tokcodec.codec.io: probing, reading frames and clips, writing mp4s.

Every clip is tiny and made here with PyAV, so the file runs in a few seconds.
"""

from __future__ import annotations

import gc
import os
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from media import (
    audio_codec,
    audio_samples,
    audio_seconds,
    make_av_source,
    make_tone_source,
    noise_frames,
    numbered_frames,
    onset_seconds,
    scene_cut_frames,
    smooth_frames,
)
from tokcodec.codec.io import (
    AudioPacketData,
    AudioStreamInfo,
    Clip,
    SceneCuts,
    VideoError,
    VideoWriter,
    audio_stream_info,
    clip_length,
    iter_audio_packets,
    iter_frames,
    probe,
    read_clips,
    write_video,
)

SAMPLE = Path(__file__).resolve().parent.parent / "codec" / "samples" / "sample.mp4"


# ---------------------------------------------------------------- helpers


def set_tkhd_matrix(path: Path, matrix: tuple[int, ...]) -> None:
    """Patch the display matrix of the (only) track header, as a phone writes it.

    Values are 16.16 fixed point except the last column (2.30).
    """
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    assert box > 0 and data.find(b"tkhd", box + 4) < 0, "expected exactly one track"
    version = data[box + 4]
    # version/flags, then times/ids/duration (20 or 32 bytes), then 16 bytes
    # of reserved/layer/alternate group/volume before the 3x3 matrix.
    offset = box + 4 + 4 + (32 if version == 1 else 20) + 16
    identity = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    assert struct.unpack(">9i", data[offset : offset + 36]) == identity
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "fps, width, height",
    [(Fraction(30000, 1001), 64, 48), (Fraction(25), 64, 48), (Fraction(25), 101, 67), (Fraction(24000, 1001), 33, 20)],
)
def test_round_trip_keeps_count_size_and_exact_fps(tmp_path: Path, fps: Fraction, width: int, height: int) -> None:
    frames = smooth_frames(12, height, width)
    path = tmp_path / "out.mp4"
    assert write_video(path, frames, fps) == 12

    info = probe(path)
    assert isinstance(info.fps, Fraction) and info.fps == fps
    assert (info.width, info.height, info.frames) == (width, height, 12)
    assert (info.rotation, info.has_audio, info.codec) == (0, False, "h264")
    assert info.path == str(path)

    back = list(iter_frames(path))
    assert len(back) == 12
    for original, decoded in zip(frames, back):
        assert decoded.shape == (height, width, 3) and decoded.dtype == np.uint8
        assert np.abs(original.astype(int) - decoded).mean() < 6  # crf 18 is near-transparent


def test_colours_survive_the_yuv_conversion(tmp_path: Path) -> None:
    # Flat saturated colours expose a BT.601/BT.709 mismatch between writer and
    # reader (errors of 10+ levels); matched matrices leave rounding only.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (30, 200, 90), (250, 250, 250), (5, 5, 5)]
    frames = [np.full((32, 32, 3), c, np.uint8) for c in colours]
    write_video(tmp_path / "c.mp4", frames, 25)
    for colour, decoded in zip(colours, iter_frames(tmp_path / "c.mp4")):
        assert np.abs(decoded[16, 16].astype(int) - colour).max() <= 2


@pytest.mark.parametrize("width, height", [(64, 48), (37, 23)])
def test_lossless_round_trip_is_bit_exact(tmp_path: Path, width: int, height: int) -> None:
    frames = noise_frames(9, height, width)
    path = tmp_path / "lossless.mp4"
    write_video(path, frames, Fraction(30000, 1001), lossless=True)
    back = list(iter_frames(path))
    assert len(back) == 9
    for original, decoded in zip(frames, back):
        np.testing.assert_array_equal(decoded, original)
    assert probe(path).fps == Fraction(30000, 1001)


def test_writer_rejects_bad_frames_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "a.mp4", 0, 64, 48)
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "a.mp4", 25, 0, 48)
    with pytest.raises(ValueError):
        write_video(tmp_path / "a.mp4", [], 25)
    writer = VideoWriter(tmp_path / "a.mp4", 25, 64, 48)
    with pytest.raises(ValueError):
        writer.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError):
        writer.write(np.zeros((64, 48, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- rotation


def asymmetric_frames(n: int = 3) -> list[np.ndarray]:
    frames = numbered_frames(n, 48, 64)
    for f in frames:
        f[:8, :16] = (255, 0, 0)  # a red block in the top-left corner
    return frames


@pytest.mark.parametrize(
    "matrix, rotation, k",
    [
        # iPhone portrait: rotate 90 clockwise to display (translation x = height).
        ((0, 0x10000, 0, -0x10000, 0, 0, 48 << 16, 0, 0x40000000), 90, -1),
        ((-0x10000, 0, 0, 0, -0x10000, 0, 64 << 16, 48 << 16, 0x40000000), 180, 2),
        ((0, -0x10000, 0, 0x10000, 0, 0, 0, 64 << 16, 0x40000000), 270, 1),
    ],
)
def test_rotation_matrix_is_honoured(tmp_path: Path, matrix: tuple[int, ...], rotation: int, k: int) -> None:
    frames = asymmetric_frames()
    path = tmp_path / "phone.mp4"
    write_video(path, frames, 30, lossless=True)
    set_tkhd_matrix(path, matrix)

    info = probe(path)
    assert info.rotation == rotation
    expected_size = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == expected_size

    back = list(iter_frames(path))
    assert len(back) == 3
    for original, decoded in zip(frames, back):
        assert decoded.shape == (info.height, info.width, 3) and decoded.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(decoded, np.rot90(original, k=k))
    clip = next(read_clips(path, clip_frames=5, temporal_stride=4))
    assert clip.frames.shape == (5, info.height, info.width, 3)


def test_portrait_phone_clip_is_upright(tmp_path: Path) -> None:
    # Spelled out for the common case: after a 90-degree clockwise turn, the
    # red block from the top-left corner sits in the top-right corner.
    path = tmp_path / "phone.mp4"
    write_video(path, asymmetric_frames(1), 30, lossless=True)
    set_tkhd_matrix(path, (0, 0x10000, 0, -0x10000, 0, 0, 48 << 16, 0, 0x40000000))
    (frame,) = iter_frames(path)
    assert frame.shape == (64, 48, 3)
    assert (frame[:16, -8:] == (255, 0, 0)).all()


# ---------------------------------------------------------------- audio


def test_audio_is_copied_from_source(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    make_av_source(source, n=20, fps=25)
    assert probe(source).has_audio

    out = tmp_path / "out.mp4"
    frames = list(iter_frames(source))
    with VideoWriter(out, probe(source).fps, 64, 48, audio_from=source) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame)
            if i == 4:
                # Audio is fed as the video advances, not all at once.
                pending = writer._audio._pending
                assert pending is not None and float(pending.pts * pending.time_base) <= 6 / 25 + 0.05

    info = probe(out)
    assert info.has_audio and info.frames == 20
    assert audio_codec(out) == "aac"
    assert abs(audio_seconds(out) - audio_seconds(source)) < 0.03

    # A shorter video gets the matching stretch of audio, not all of it.
    short = tmp_path / "short.mp4"
    write_video(short, frames[:10], 25, audio_from=source)
    assert abs(audio_seconds(short) - 10 / 25) < 0.03


def test_pcm_audio_is_transcoded_to_aac(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    make_av_source(wav, n=25, fps=25, codec="pcm_s16le", video=False)
    out = tmp_path / "out.mp4"
    write_video(out, smooth_frames(25, 48, 64), 25, audio_from=wav)
    assert probe(out).has_audio
    assert audio_codec(out) == "aac"
    assert abs(audio_seconds(out) - 1.0) < 0.05


def test_audio_from_a_silent_video_adds_no_track(tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    write_video(silent, smooth_frames(3, 48, 64), 25)
    out = tmp_path / "out.mp4"
    write_video(out, smooth_frames(3, 48, 64), 25, audio_from=silent)
    assert not probe(out).has_audio


def test_audio_from_a_missing_file_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        VideoWriter(tmp_path / "out.mp4", 25, 64, 48, audio_from=tmp_path / "nope.mp4")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- audio packets (.tok audio)


def packets_of(path: Path) -> tuple[AudioStreamInfo, Iterator[AudioPacketData]]:
    info = audio_stream_info(path)
    assert info is not None
    return info, iter_audio_packets(path)


def test_audio_stream_info_and_packets_of_an_aac_source(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    make_av_source(source, n=20, fps=25)
    info = audio_stream_info(source)
    assert info == AudioStreamInfo("aac", 48000, "mono", Fraction(1, 48000), info.extradata)
    assert isinstance(info.time_base, Fraction) and len(info.extradata) >= 2  # the AudioSpecificConfig

    packets = list(iter_audio_packets(source))
    assert all(isinstance(p, AudioPacketData) and p.data and p.duration > 0 for p in packets)
    pts = [p.pts for p in packets]
    assert pts == sorted(pts) and pts[0] <= 0  # the encoder's priming packet sits before 0
    # Together they span the source's audio.
    assert abs((packets[-1].pts + packets[-1].duration) / 48000 - audio_seconds(source)) < 0.03


def test_audio_packets_round_trip_is_a_stream_copy(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    make_av_source(source, n=20, fps=25)
    info, packets = packets_of(source)

    pulled = 0

    def counted() -> Iterator[AudioPacketData]:
        nonlocal pulled
        for packet in packets:
            pulled += 1
            yield packet

    out = tmp_path / "out.mp4"
    frames = smooth_frames(20, 48, 64)
    with VideoWriter(out, 25, 64, 48, audio_packets=(info, counted())) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame)
            if i == 4:
                # Pulled as the video advances: 0.2 s is 10 packets, plus the
                # priming packet and the one held back for the next frame.
                assert pulled <= 13
    assert probe(out).has_audio and audio_codec(out) == "aac"
    assert abs(audio_seconds(out) - audio_seconds(source)) <= 1024 / 48000

    # The very same sound as taking it from the file.
    via_file = tmp_path / "via_file.mp4"
    write_video(via_file, frames, 25, audio_from=source)
    np.testing.assert_array_equal(audio_samples(out)[0], audio_samples(via_file)[0])


@pytest.mark.parametrize(
    "codec, suffix, format, expected",
    [
        ("pcm_s16le", "wav", None, "aac"),  # unnamed "1 channels" layout
        ("vorbis", "webm", "webm", "aac"),  # millisecond time base, header extradata
        ("libopus", "webm", "webm", "opus"),  # plays in mp4: copied (needs its OpusHead extradata)
    ],
)
def test_audio_packets_are_transcoded_when_mp4_cannot_take_them(
    tmp_path: Path, codec: str, suffix: str, format: str | None, expected: str
) -> None:
    source = tmp_path / f"tone.{suffix}"
    make_tone_source(source, 1.0, codec=codec, video=False, format=format)
    info, packets = packets_of(source)
    out = tmp_path / "out.mp4"
    write_video(out, smooth_frames(25, 48, 64), 25, audio_packets=(info, packets))
    assert audio_codec(out) == expected
    assert abs(audio_seconds(out) - 1.0) < 0.03


def test_audio_packets_of_a_silent_video(tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    write_video(silent, smooth_frames(3, 48, 64), 25)
    assert audio_stream_info(silent) is None
    assert list(iter_audio_packets(silent)) == []


def test_audio_from_and_audio_packets_are_exclusive(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    make_av_source(source, n=5)
    with pytest.raises(ValueError, match="not both"):
        VideoWriter(tmp_path / "out.mp4", 25, 64, 48, audio_from=source, audio_packets=packets_of(source))
    with pytest.raises(ValueError, match="audio_start"):
        VideoWriter(tmp_path / "out.mp4", 25, 64, 48, audio_from=source, audio_start=-1)
    assert leftovers(tmp_path) == []


def test_bad_audio_stream_info_fails_cleanly(tmp_path: Path) -> None:
    info = AudioStreamInfo("no-such-codec", 48000, "stereo", Fraction(1, 48000), b"")
    with pytest.raises(VideoError, match="no-such-codec"):
        VideoWriter(tmp_path / "out.mp4", 25, 64, 48, audio_packets=(info, []))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codec", ["aac", "pcm_s16le"])  # stream copy, transcode
@pytest.mark.parametrize("via", ["audio_from", "audio_packets"])
def test_audio_start_skips_the_first_part(tmp_path: Path, codec: str, via: str) -> None:
    source = tmp_path / ("source.mp4" if codec == "aac" else "source.mov")
    make_tone_source(source, 1.6, onset=0.6, codec=codec)
    frames = smooth_frames(40, 48, 64)  # as long as the source
    kwargs = {"audio_from": source} if via == "audio_from" else {"audio_packets": packets_of(source)}

    out = tmp_path / "out.mp4"
    write_video(out, frames, 25, audio_start=0.4, **kwargs)
    assert audio_codec(out) == "aac"
    # The tone that starts at 0.6 s in the source now starts at 0.2 s, and
    # the audio (which runs out before the video) is 0.4 s shorter.
    assert abs(onset_seconds(out) - 0.2) < 0.005
    assert abs(audio_seconds(out) - 1.2) <= 1024 / 48000

    if via == "audio_packets":
        kwargs = {"audio_packets": packets_of(source)}
    whole = tmp_path / "whole.mp4"
    write_video(whole, frames, 25, **kwargs)
    assert abs(onset_seconds(whole) - 0.6) < 0.005
    assert abs(audio_seconds(whole) - 1.6) <= 1024 / 48000


def test_audio_start_past_the_audio_leaves_a_playable_file(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    make_av_source(source, n=10)
    out = tmp_path / "out.mp4"
    write_video(out, smooth_frames(10, 48, 64), 25, audio_packets=packets_of(source), audio_start=5.0)
    info = probe(out)
    assert info.frames == 10 and not info.has_audio  # the mp4 muxer leaves out an empty track


# ---------------------------------------------------------------- atomic output


def test_failure_leaves_existing_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 25, 64, 48) as writer:
            writer.write(smooth_frames(1, 48, 64)[0])
            assert leftovers(tmp_path)  # the temp file sits beside the target meanwhile
            raise RuntimeError("boom")
    assert path.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []

    # A bad frame half way is a failure like any other.
    with pytest.raises(ValueError):
        write_video(path, [smooth_frames(1, 48, 64)[0], np.zeros((2, 2, 3), np.uint8)], 25)
    assert path.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_success_replaces_file_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    write_video(path, smooth_frames(3, 48, 64), 25)
    assert probe(path).frames == 3
    assert leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_abandoned_writer_removes_its_temp_file(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "out.mp4", 25, 64, 48)
    writer.write(smooth_frames(1, 48, 64)[0])
    assert leftovers(tmp_path)
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a video\n" * 20)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x01garbage" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = tmp_path / "tone.m4a"
    make_av_source(audio, n=5, video=False)
    folder = tmp_path / "folder"
    folder.mkdir()
    return {
        "text": text,
        "fake": fake,
        "empty": empty,
        "missing": tmp_path / "missing.mp4",
        "audio": audio,
        "folder": folder,
    }


READERS = {
    "probe": probe,
    "iter_frames": iter_frames,
    "read_clips": read_clips,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_bad_input_raises_one_line_video_error(bad_inputs: dict[str, Path], reader: str) -> None:
    expected = {
        "text": "not a video file",
        "fake": "not a video file",
        "empty": "empty file",
        "missing": "no such file",
        "audio": "audio only",
        "folder": "directory",
    }
    for kind, path in bad_inputs.items():
        # Raised at the call, not at the first next(): callers validate early.
        with pytest.raises(VideoError) as caught:
            READERS[reader](path)
        message = str(caught.value)
        assert message.startswith(f"{path}: "), message
        assert expected[kind] in message, message
        assert "\n" not in message


AUDIO_READERS = {
    "audio_stream_info": audio_stream_info,
    "iter_audio_packets": iter_audio_packets,
}


@pytest.mark.parametrize("reader", sorted(AUDIO_READERS))
def test_bad_input_to_the_audio_readers_raises_video_error(bad_inputs: dict[str, Path], reader: str) -> None:
    expected = {
        "text": "not a video file",
        "fake": "not a video file",
        "empty": "empty file",
        "missing": "no such file",
        "folder": "directory",
    }
    for kind, message in expected.items():
        path = bad_inputs[kind]
        with pytest.raises(VideoError) as caught:
            AUDIO_READERS[reader](path)  # at the call, like iter_frames
        text = str(caught.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text
    # An audio-only file is fine here: it is where the sound comes from.
    assert audio_stream_info(bad_inputs["audio"]).codec == "aac"
    assert len(list(iter_audio_packets(bad_inputs["audio"]))) > 0


# ---------------------------------------------------------------- clips


@pytest.mark.parametrize(
    "n, stride, expected",
    [(0, 4, 1), (1, 4, 1), (2, 4, 5), (5, 4, 5), (6, 4, 9), (16, 4, 17), (17, 4, 17), (3, 1, 3), (4, 2, 5)],
)
def test_clip_length(n: int, stride: int, expected: int) -> None:
    assert clip_length(n, stride) == expected


@pytest.fixture(scope="module")
def twenty_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("clips") / "twenty.mp4"
    write_video(path, numbered_frames(20), 25, lossless=True)
    return path, list(iter_frames(path))


@pytest.mark.parametrize(
    "clip_frames, stride, layout",
    [
        # (start, valid, T) of each clip for a 20-frame video
        (17, 4, [(0, 17, 17), (17, 3, 5)]),
        (9, 4, [(0, 9, 9), (9, 9, 9), (18, 2, 5)]),
        (5, 2, [(0, 5, 5), (5, 5, 5), (10, 5, 5), (15, 5, 5)]),
        (19, 6, [(0, 19, 19), (19, 1, 1)]),
        (33, 4, [(0, 20, 21)]),
        (1, 4, [(i, 1, 1) for i in range(20)]),
    ],
)
def test_read_clips_layout_and_padding(
    twenty_frames: tuple[Path, list[np.ndarray]], clip_frames: int, stride: int, layout: list[tuple[int, int, int]]
) -> None:
    path, frames = twenty_frames
    clips = list(read_clips(path, clip_frames=clip_frames, temporal_stride=stride))
    assert [(c.start, c.valid, len(c.frames)) for c in clips] == layout
    for clip in clips:
        assert isinstance(clip, Clip) and clip.frames.dtype == np.uint8
        assert clip.frames.shape[1:] == (48, 64, 3)
        real = frames[clip.start : clip.start + clip.valid]
        np.testing.assert_array_equal(clip.frames[: clip.valid], np.stack(real))
        for padded in clip.frames[clip.valid :]:
            np.testing.assert_array_equal(padded, real[-1])


def test_read_clips_default_is_17_by_4(twenty_frames: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = twenty_frames
    assert [(c.start, c.valid, len(c.frames)) for c in read_clips(path)] == [(0, 17, 17), (17, 3, 5)]


@pytest.mark.parametrize("clip_frames, stride", [(16, 4), (0, 4), (18, 4), (17, 0), (11, 3)])
def test_read_clips_rejects_bad_shape(twenty_frames: tuple[Path, list[np.ndarray]], clip_frames: int, stride: int) -> None:
    path, _ = twenty_frames
    with pytest.raises(ValueError):
        read_clips(path, clip_frames=clip_frames, temporal_stride=stride)


def test_scene_cuts_mark_the_frame_where_the_picture_changes_at_once() -> None:
    def cuts(frames: list[np.ndarray]) -> list[int]:
        detector = SceneCuts()
        return [i for i, f in enumerate(frames) if detector.is_cut(f)]

    assert cuts(scene_cut_frames(12, 8)) == [12]
    assert cuts(smooth_frames(20, 48, 64)) == []  # steady motion
    black, white = np.zeros((48, 64, 3), np.uint8), np.full((48, 64, 3), 255, np.uint8)
    fade = [np.full((48, 64, 3), round(255 * i / 16), np.uint8) for i in range(17)]  # 6% a frame
    assert cuts([black] * 3 + fade + [white] * 3) == []
    assert cuts([black] * 3 + [white] * 3) == [3]
    assert cuts([black] * 3 + [white[:24]] * 2 + [black[:24]]) == [5]  # a new size starts again
    with pytest.raises(ValueError, match="threshold"):
        SceneCuts(0)


def test_read_clips_end_a_clip_before_a_scene_cut(tmp_path: Path) -> None:
    path, frames = tmp_path / "cut.mp4", scene_cut_frames(12, 18)
    write_video(path, frames, 25, lossless=True)
    clips = list(read_clips(path, 9, 4, cuts=SceneCuts()))
    assert [(c.start, c.valid, len(c.frames)) for c in clips] == [(0, 9, 9), (9, 3, 5), (12, 9, 9), (21, 9, 9)]
    np.testing.assert_array_equal(clips[1].frames, np.stack(frames[9:12] + [frames[11]] * 2))
    np.testing.assert_array_equal(clips[2].frames, np.stack(frames[12:21]))
    plain = [(c.start, c.valid) for c in read_clips(path, 9, 4)]
    assert plain == [(0, 9), (9, 9), (18, 9), (27, 3)]


def test_frames_handed_back_begin_the_next_clip(tmp_path: Path) -> None:
    path, frames = tmp_path / "cut.mp4", scene_cut_frames(12, 18)  # a cut at frame 12; 30 frames
    write_video(path, frames, 25, lossless=True)
    clips, taken = read_clips(path, 9, 4, cuts=SceneCuts()), []
    for clip in clips:
        if clip.start in (0, 5, 21):  # hand back part of a full clip, of one a cut ended and of the last
            with pytest.raises(ValueError, match="cannot keep"):
                clips.give_back(clip, clip.valid)
            clip = clips.give_back(clip, 5)
        taken.append(clip)
    # 0-4 | 5-9 | 10-11 ends at the cut | 12-20 | 21-25 | 26-29 ends the video
    assert [(c.start, c.valid, len(c.frames)) for c in taken] == [
        (0, 5, 5), (5, 5, 5), (10, 2, 5), (12, 9, 9), (21, 5, 5), (26, 4, 5)]
    for clip in taken:
        np.testing.assert_array_equal(clip.frames[: clip.valid], np.stack(frames[clip.start: clip.start + clip.valid]))
        for padded in clip.frames[clip.valid:]:
            np.testing.assert_array_equal(padded, frames[clip.start + clip.valid - 1])


# ---------------------------------------------------------------- shipped sample


def test_shipped_sample_clip() -> None:
    info = probe(SAMPLE)
    assert (info.width, info.height, info.frames, info.codec) == (256, 192, 33, "h264")
    assert SAMPLE.stat().st_size < 250_000
    clips = list(read_clips(SAMPLE))
    assert [(c.start, c.valid, len(c.frames)) for c in clips] == [(0, 17, 17), (17, 16, 17)]


# ---------------------------------------------------------------- real corpus

CORPUS = Path(os.environ.get("TOKCODEC_CORPUS", "~/.cache/tokcodec/corpus")).expanduser()


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name, codec, written",
    [
        ("ChID-BLITS-EBU.mp4", "aac", "aac"),  # 5.1 HE-AAC: the AudioSpecificConfig matters
        ("Megamind.avi", "ac3", "ac3"),
        ("oa4_launch.webm", "vorbis", "aac"),
        ("cockatoo.mp4", "mp3", "mp3"),
    ],
)
def test_corpus_audio_packets_match_audio_from(tmp_path: Path, name: str, codec: str, written: str) -> None:
    source = CORPUS / name
    if not source.exists():
        pytest.skip(f"{source} not found (set TOKCODEC_CORPUS)")
    info = audio_stream_info(source)
    assert info is not None and info.codec == codec
    fps = probe(source).fps
    frames = smooth_frames(int(4 * fps), 48, 64)  # 4 s of tiny video: the audio is what counts
    outputs = []
    for kwargs in ({"audio_from": source}, {"audio_packets": packets_of(source)}):
        out = tmp_path / f"out{len(outputs)}.mp4"
        write_video(out, frames, fps, audio_start=1.0, **kwargs)
        assert audio_codec(out).startswith(written)  # the mp3 decoder is "mp3float"
        outputs.append(audio_samples(out)[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert abs(len(outputs[1]) / info.rate - 4.0) < 0.1


def test_timestamp_gaps_become_repeated_frames(tmp_path: Path) -> None:
    # Variable-rate input (an AVI's empty "repeat" packets, a phone's VFR video):
    # frames are shown at a constant rate, the previous one repeated through gaps.
    import av

    path = tmp_path / "vfr.mp4"
    stamps = [0, 1, 2, 5, 6, 10, 11]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for pts, frame in zip(stamps, smooth_frames(len(stamps), 48, 64)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 25)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    fps = probe(path).fps
    frames = list(iter_frames(path))
    # The whole 12/25 s play at the file's (average) rate, give or take one frame.
    assert abs(len(frames) - 12 / 25 * fps) <= 1
    repeats = sum(a is b for a, b in zip(frames, frames[1:]))
    assert repeats == len(frames) - len(stamps)
    # the source's own frames on that timeline (what bench/rd.py compares against), repeats alike
    from tokcodec.codec.video_reader import constant_rate_frames

    with av.open(str(path)) as container:
        own = list(constant_rate_frames(container.decode(video=0), fps))
    assert len(own) == len(frames)
    assert [a is b for a, b in zip(own, own[1:])] == [a is b for a, b in zip(frames, frames[1:])]
