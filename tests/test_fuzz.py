"""Fuzzing the .tok reader with mutated and truncated files.

Whatever the bytes, reading must end in a TokError or in valid chunks: never
another exception, never a hang (hypothesis deadline), never a large
allocation (tracemalloc peak). CI runs a reduced count; the full run is

    TOKCODEC_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q tests/test_fuzz.py -m ""
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokcodec.bitstream.container import AudioPacket, AudioTrack, Header, TokError, TokReader, TokWriter
from tokcodec.bitstream.entropy import EntropyParams

EXAMPLES = int(os.environ.get("TOKCODEC_FUZZ_EXAMPLES", "1500"))
PEAK_LIMIT = 32 << 20  # bytes; a valid file of this size needs well under 1 MiB


def _seed_file(model_id: int) -> bytes:
    h = Header(model="fuzz", fingerprint="00112233aabbccdd", width=40, height=24, padded_width=40,
               padded_height=24, fps=Fraction(25), frames=0, chunk_frames=5, temporal_factor=4,
               spatial_factor=8, bits=12, entropy=EntropyParams(model_id=model_id),
               audio=AudioTrack("aac", 44100, "mono", Fraction(1, 44100), b"\x12\x08"))
    rng = np.random.default_rng(model_id)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.tok"
        with TokWriter(path, h) as w:
            for i, frames in enumerate([5, 5, 3]):
                w.write_chunk(frames, rng.integers(0, 2**12, (2, 3, 5)), [AudioPacket(i, 1024, b"abc" * i)])
        return path.read_bytes()


SEEDS = [_seed_file(0), _seed_file(1), _seed_file(2)]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("field"), st.integers(0, 1 << 20), st.sampled_from([0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0])),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 16)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.integers(0, 255)),
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, val in ops:
        if not buf:
            break
        pos %= len(buf)
        if op == "flip":
            buf[pos] ^= val
        elif op == "truncate":
            del buf[pos:]
        elif op == "field":  # forge a 4-byte little-endian length or count
            buf[pos : pos + 4] = val.to_bytes(4, "little")
        elif op == "delete":
            del buf[pos : pos + val]
        else:
            buf.insert(pos, val)
    return bytes(buf)


def read_everything(path: Path) -> None:
    with TokReader(path) as r:
        for chunk in r.chunks():
            t = r.header.chunk_token_frames(chunk.frames)
            assert chunk.tokens.shape == (t, *r.header.token_grid[1:])
            assert chunk.tokens.min() >= 0 and chunk.tokens.max() < 2**r.header.bits
        list(r.audio_packets())


@settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(range(len(SEEDS))), ops=st.lists(mutation, min_size=1, max_size=4))
def test_reader_survives_mutated_files(tmp_path: Path, seed: int, ops: list) -> None:
    path = tmp_path / "f.tok"
    path.write_bytes(mutate(SEEDS[seed], ops))
    tracemalloc.start()
    try:
        read_everything(path)
    except TokError as exc:
        assert "\n" not in str(exc)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < PEAK_LIMIT


def test_seed_files_are_valid(tmp_path: Path) -> None:
    for i, data in enumerate(SEEDS):
        (tmp_path / f"{i}.tok").write_bytes(data)
        read_everything(tmp_path / f"{i}.tok")
