"""The .tok container: round trips, random access, live files, and every corruption."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tokcodec.bitstream.container import (CHROMA_LAYERS, LUMA_LAYER, AudioPacket, AudioTrack, Header, TokError,
                                          TokReader, TokWriter)
from tokcodec.bitstream.entropy import EntropyParams
from tokcodec.bitstream.luma_layer import CellLayer, Layers, layer_shape


def header(**kw) -> Header:
    base = dict(model="tiny", fingerprint="0123456789abcdef", width=60, height=30, padded_width=64,
                padded_height=32, fps=Fraction(30000, 1001), frames=0, chunk_frames=9, temporal_factor=4,
                spatial_factor=8, bits=10, quality=0, entropy=EntropyParams(),
                audio=AudioTrack("aac", 48000, "stereo", Fraction(1, 48000), b"\x11\x90"))
    base.update(kw)
    return Header(**base)


def grids(frames_per_chunk: list[int], h: Header, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    _, th, tw = h.token_grid
    return [rng.integers(0, 2**h.bits, (h.chunk_token_frames(f), th, tw)) for f in frames_per_chunk]


def audio(i: int) -> list[AudioPacket]:
    return [AudioPacket(1024 * (2 * i + k), 1024, bytes([i, k]) * (5 + k)) for k in range(2)]


def write(path: Path, h: Header, frames=(9, 9, 4), **kw) -> list[np.ndarray]:
    gs = grids(list(frames), h)
    with TokWriter(path, h, **kw) as w:
        for i, (f, g) in enumerate(zip(frames, gs)):
            w.write_chunk(f, g, audio(i))
    return gs


@pytest.mark.parametrize("model_id", [0, 1, 2])
def test_round_trip_tokens_audio_and_header(tmp_path: Path, model_id: int) -> None:
    h = header(entropy=EntropyParams(model_id=model_id))
    gs = write(tmp_path / "a.tok", h)
    with TokReader(tmp_path / "a.tok") as r:
        assert r.header == Header(**{**h.__dict__, "frames": 22})
        assert r.frames == 22 and [e.first_frame for e in r.entries] == [0, 9, 18]
        for i, c in enumerate(r.chunks()):
            assert np.array_equal(c.tokens, gs[i]) and c.tokens.dtype == np.int64
            assert c.audio == audio(i)
        assert list(r.audio_packets()) == audio(0) + audio(1) + audio(2)


def test_header_without_audio_and_odd_values(tmp_path: Path) -> None:
    h = header(audio=None, fps=Fraction(24000, 1001), bits=18, quality=3, width=17, padded_width=24)
    assert Header.read(__import__("io").BytesIO(h.to_bytes())) == h


def test_range_selects_only_the_needed_chunks(tmp_path: Path) -> None:
    write(tmp_path / "a.tok", header())
    with TokReader(tmp_path / "a.tok") as r:
        assert [e.index for e in r.entries_for(10, 3)] == [1]
        assert [e.index for e in r.entries_for(8, 2)] == [0, 1]
        assert [e.index for e in r.entries_for(17)] == [1, 2]
        assert [e.index for e in r.entries_for(21, 100)] == [2]
        with pytest.raises(TokError, match="start frame 22 is beyond the end of the video \\(22 frames\\)"):
            r.entries_for(22)


def test_file_without_index_is_walked(tmp_path: Path) -> None:
    gs = write(tmp_path / "a.tok", header())
    data = (tmp_path / "a.tok").read_bytes()
    index_offset = struct.unpack("<Q", data[-12:-4])[0]
    (tmp_path / "b.tok").write_bytes(data[:index_offset])
    with TokReader(tmp_path / "b.tok") as r:
        assert r.frames == 22
        assert np.array_equal(r.read_chunk(2).tokens, gs[2])


def test_chunks_before_the_last_may_be_short_with_or_without_the_index(tmp_path: Path) -> None:
    # An encoder ends a chunk early at a scene cut (format 1.10): 9, 3, 1, 9 and 5 frames.
    frames = (9, 3, 1, 9, 5)
    gs = write(tmp_path / "a.tok", header(), frames)
    data = (tmp_path / "a.tok").read_bytes()
    (tmp_path / "b.tok").write_bytes(data[: struct.unpack("<Q", data[-12:-4])[0]])  # no index: walked
    for name in ("a.tok", "b.tok"):
        with TokReader(tmp_path / name) as r:
            assert [(e.first_frame, e.frames) for e in r.entries] == [(0, 9), (9, 3), (12, 1), (13, 9), (22, 5)]
            assert r.frames == 27 and [e.index for e in r.entries_for(11, 3)] == [1, 2, 3]
            for i, c in enumerate(r.chunks()):
                assert np.array_equal(c.tokens, gs[i]) and c.audio == audio(i)


def test_live_file_is_readable_while_it_grows(tmp_path: Path) -> None:
    h = header()
    gs = grids([9, 9], h)
    w = TokWriter(tmp_path / "live.tok", h, atomic=False)
    w.write_chunk(9, gs[0])
    with TokReader(tmp_path / "live.tok") as r:
        assert r.header.frames == 0 and r.frames == 9
    w.write_chunk(9, gs[1])
    with TokReader(tmp_path / "live.tok") as r:
        assert r.frames == 18 and np.array_equal(r.read_chunk(1).tokens, gs[1])
    w.close()
    with TokReader(tmp_path / "live.tok") as r:
        assert r.header.frames == 18


def test_writer_refuses_bad_chunks_and_cleans_up(tmp_path: Path) -> None:
    h = header()
    out = tmp_path / "a.tok"
    out.write_bytes(b"precious")
    with pytest.raises(ValueError, match="expected"):
        with TokWriter(out, h) as w:
            w.write_chunk(9, np.zeros((2, 4, 8), np.int64))
    for frames in (0, 10):  # chunk_frames is 9
        with pytest.raises(ValueError, match="a chunk holds 1 to 9 frames"):
            with TokWriter(out, h) as w:
                w.write_chunk(5, np.zeros((2, 4, 8), np.int64))
                w.write_chunk(frames, np.zeros((h.chunk_token_frames(frames), 4, 8), np.int64))
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tok"]


def _fix_header_crc(data: bytearray) -> None:
    size = struct.unpack_from("<I", data, 6)[0]
    struct.pack_into("<I", data, 10 + size, zlib.crc32(bytes(data[: 10 + size])))


def corrupt(tmp_path: Path, how: str) -> Path:
    write(tmp_path / "good.tok", header())
    data = bytearray((tmp_path / "good.tok").read_bytes())
    with TokReader(tmp_path / "good.tok") as r:
        chunk1 = r.entries[1].offset
    if how == "truncated":
        data = data[: chunk1 + 40]
    elif how == "flipped":
        data[chunk1 + 40] ^= 0x20
    elif how == "version":
        data[4:6] = bytes([2, 0])
        _fix_header_crc(data)
    elif how == "header-crc":
        data[12] ^= 1
    elif how == "not-tok":
        data = bytearray(b"RIFF" + bytes(100))
    elif how == "empty":
        data = bytearray()
    elif how == "forged-length":
        struct.pack_into("<I", data, chunk1 + 22, 0xFFFFFFF0)  # token_bytes of chunk 1
    path = tmp_path / "bad.tok"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "how,message",
    [
        ("truncated", "truncated .tok file: 9 of 22 frames present"),
        ("flipped", "chunk 1 is corrupt (CRC mismatch)"),
        ("version", "unsupported .tok version 2.0 (this tokcodec reads 1.x)"),
        ("header-crc", "corrupt .tok header (CRC mismatch)"),
        ("not-tok", "not a .tok file (bad magic)"),
        ("empty", "empty file"),
        ("forged-length", "chunk 1 is corrupt (bad chunk header)"),
    ],
)
def test_damage_is_reported_in_one_line(tmp_path: Path, how: str, message: str) -> None:
    path = corrupt(tmp_path, how)
    with pytest.raises(TokError) as err:
        with TokReader(path) as r:
            for _ in r.chunks():
                pass
    assert str(err.value) == message


def test_header_validation_rejects_inconsistent_fields() -> None:
    with pytest.raises(TokError, match="padded width"):
        header(padded_width=60).validate()
    with pytest.raises(TokError, match="chunk frames"):
        header(chunk_frames=8).validate()


def test_a_coded_size_round_trips_and_is_checked() -> None:
    """`encode --scale`: the tokenizer's size is stored beside the displayed one (version 1.3)."""
    h = header(coded_width=90, coded_height=45, padded_width=96, padded_height=48)
    back = Header.read(__import__("io").BytesIO(h.to_bytes()))
    assert back == h and back.coded_size == (90, 45) and back.token_grid[1:] == (6, 12)
    with pytest.raises(TokError, match="padded width"):
        header(coded_width=90, coded_height=45).validate()
    assert header().coded_size == (60, 30)


def test_a_version_1_2_header_reads_as_unscaled() -> None:
    """Files written before 1.3 end their header body before the coded size (and 1.5's luma range, 1.7's layer
    flag, 1.9's sharpening)."""
    data = header().to_bytes()
    body = data[10:-4][:-15]
    head = b"TOKC" + bytes([1, 2]) + struct.pack("<I", len(body)) + body
    old = Header.read(__import__("io").BytesIO(head + struct.pack("<I", zlib.crc32(head))))
    assert old == header() and old.coded_size == (60, 30)


def test_a_version_1_4_header_reads_as_the_nominal_luma_range() -> None:
    """1.5 appended the Y' span the tokens code; before it, always 16..235 (BT.601)."""
    wide = replace(header(), luma_black=0, luma_white=255, luma_matrix=1)
    data = wide.to_bytes()
    assert Header.read(io.BytesIO(data)) == wide
    body = data[10:-4][:-7]  # the luma range, the layer flag (1.7) and the sharpening (1.9)
    head = b"TOKC" + bytes([1, 4]) + struct.pack("<I", len(body)) + body
    old = Header.read(io.BytesIO(head + struct.pack("<I", zlib.crc32(head))))
    assert (old.luma_black, old.luma_white, old.luma_matrix) == (16, 235, 0)
    for bad in (dict(luma_black=200, luma_white=100), dict(luma_matrix=2)):
        with pytest.raises(TokError, match="luma range"):
            Header.read(io.BytesIO(replace(header(), **bad).to_bytes()))


def test_the_sharpening_round_trips_and_a_version_1_8_header_reads_as_none() -> None:
    """1.9 appended the decoders' unsharp mask (amount, sigma, threshold in 1/16ths); before it, none."""
    sharp = replace(header(), luma_layer=CHROMA_LAYERS, sharpen_amount=8, sharpen_sigma=24, sharpen_threshold=32)
    data = sharp.to_bytes()
    assert data[4:6] == bytes([1, 10]) and Header.read(io.BytesIO(data)) == sharp
    body = data[10:-4][:-3]
    head = b"TOKC" + bytes([1, 8]) + struct.pack("<I", len(body)) + body
    old = Header.read(io.BytesIO(head + struct.pack("<I", zlib.crc32(head))))
    assert old == replace(sharp, sharpen_amount=0, sharpen_sigma=0, sharpen_threshold=0)
    with pytest.raises(TokError, match="sharpening"):
        Header.read(io.BytesIO(replace(header(), sharpen_amount=4).to_bytes()))  # an amount needs a sigma
    assert Header.read(io.BytesIO(replace(header(), sharpen_sigma=24).to_bytes())).sharpen_amount == 0


def layer_for(h: Header, frames: int, seed: int = 0, block: int = 8) -> CellLayer:
    rng = np.random.default_rng(seed)
    shape = layer_shape(frames, h.height, h.width, block, 4)
    return CellLayer(block, 4, 4, rng.integers(-5, 6, shape).astype(np.int8))


def test_chunks_carry_a_luma_layer_in_a_file_that_says_so(tmp_path: Path) -> None:
    """1.7: a header with luma_layer = 1 gives every chunk a layer field (empty: no layer for that chunk)."""
    h = header(luma_layer=1, entropy=EntropyParams(model_id=2))
    layers = [layer_for(h, 9, 1), None, layer_for(h, 4, 2)]
    gs = grids([9, 9, 4], h)
    with TokWriter(tmp_path / "l.tok", h) as w:
        for i, (f, g, layer) in enumerate(zip([9, 9, 4], gs, layers)):
            w.write_chunk(f, g, audio(i), Layers(layer))
    assert w.layer_bytes > 0
    for path in (tmp_path / "l.tok",):
        with TokReader(path) as r:
            assert r.header.luma_layer == 1
            for c, g, layer in zip(r.chunks(), gs, layers):
                assert np.array_equal(c.tokens, g) and c.audio == audio(c.index)
                assert (c.layers.y is None) == (layer is None) and (c.layer_bytes > 0) == (layer is not None)
                assert c.layers.cb is None and c.layers.cr is None
                if layer is not None:
                    assert (c.layers.y.block, c.layers.y.group, c.layers.y.step) == (8, 4, 4)
                    assert np.array_equal(c.layers.y.values, layer.values)
    # the chunks without the index (a live file) walk the same way
    data = (tmp_path / "l.tok").read_bytes()
    (tmp_path / "cut.tok").write_bytes(data[: data.rindex(b"TIDX")])
    with TokReader(tmp_path / "cut.tok") as r:
        assert [bool(c.layers) for c in r.chunks()] == [True, False, True]


def test_chunks_carry_chroma_layers_in_a_file_that_says_so(tmp_path: Path) -> None:
    """1.8: a header with luma_layer = 2 lets a chunk carry Y', Cb and Cr layers, each or none."""
    h = header(luma_layer=CHROMA_LAYERS, audio=None)
    layers = [Layers(layer_for(h, 9, 1), layer_for(h, 9, 2, 16), layer_for(h, 9, 3, 32)),
              Layers(None, None, layer_for(h, 9, 4, 16)), Layers(), Layers(layer_for(h, 4, 5))]
    gs = grids([9, 9, 9, 4], h)
    with TokWriter(tmp_path / "c.tok", h) as w:
        for f, g, chunk_layers in zip([9, 9, 9, 4], gs, layers):
            w.write_chunk(f, g, (), chunk_layers)
    with TokReader(tmp_path / "c.tok") as r:
        assert r.header.luma_layer == CHROMA_LAYERS
        for c, g, want in zip(r.chunks(), gs, layers):
            assert np.array_equal(c.tokens, g) and (c.layer_bytes > 0) == bool(want)
            for got, layer in zip(c.layers.planes, want.planes):
                assert (got is None) == (layer is None)
                if layer is not None:
                    assert got.block == layer.block and np.array_equal(got.values, layer.values)
    # a file with Y' layers only takes no chroma
    with pytest.raises(ValueError, match="chroma"):
        with TokWriter(tmp_path / "y.tok", header(luma_layer=LUMA_LAYER)) as w:
            w.write_chunk(9, gs[0], (), layers[1])
    assert not (tmp_path / "y.tok").exists()


def test_a_layer_is_refused_where_the_file_has_none_or_it_does_not_fit(tmp_path: Path) -> None:
    h = header()
    with pytest.raises(ValueError, match="coarse layers"):
        with TokWriter(tmp_path / "a.tok", h) as w:
            w.write_chunk(9, grids([9], h)[0], (), Layers(layer_for(h, 9)))
    h = header(luma_layer=CHROMA_LAYERS)
    with pytest.raises(ValueError, match="coarse layers"):
        with TokWriter(tmp_path / "b.tok", h) as w:
            w.write_chunk(9, grids([9], h)[0], (), Layers(cr=layer_for(h, 4)))  # a 4-frame layer for 9 frames
    assert not list(tmp_path.iterdir())


def test_a_damaged_layer_is_reported_in_one_line(tmp_path: Path) -> None:
    h = header(luma_layer=1, audio=None)
    g = grids([9], h)[0]
    with TokWriter(tmp_path / "a.tok", h) as w:
        w.write_chunk(9, g, (), Layers(layer_for(h, 9)))
    data = bytearray((tmp_path / "a.tok").read_bytes())
    with TokReader(tmp_path / "a.tok") as r:
        off = r.entries[0].offset
        c = r.read_chunk(0)
    start = off + 32 + 4 + c.payload_bytes  # chunk head, layer size, tokens (no audio)
    data[start] = 2  # a block of 2 pixels, below what a reader accepts; the CRC made to match
    end = start + c.layer_bytes
    data[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(data[off:end])))
    (tmp_path / "b.tok").write_bytes(bytes(data))
    with TokReader(tmp_path / "b.tok") as r, pytest.raises(TokError, match=r"chunk 0 is corrupt \(luma layer"):
        r.read_chunk(0)


def test_a_file_without_a_layer_keeps_the_1_6_chunk_layout(tmp_path: Path) -> None:
    """Only the header's flag byte is new: a 1.6 reader (which skips unknown header bytes) reads its chunks."""
    h = header()
    write(tmp_path / "a.tok", h)
    h1 = header(luma_layer=1)
    write(tmp_path / "b.tok", h1)
    a, b = (tmp_path / "a.tok").read_bytes(), (tmp_path / "b.tok").read_bytes()
    assert len(b) - len(a) == 3 * 4  # a 4-byte empty layer size per chunk, nothing else
    assert Header.read(io.BytesIO(a)).luma_layer == 0 and Header.read(io.BytesIO(b)).luma_layer == 1
