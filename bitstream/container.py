"""Reading and writing the `.tok` container (specified in FORMAT.md).

The container knows bytes and token arrays, never models or pixels: the
writer takes (T', H', W') integer grids per chunk and the reader gives them
back. Every failure while reading is a `TokError` with a one-line message;
every length read from the file is bounded before it is used.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .entropy import EntropyError, EntropyParams, EntropyPrior, decode_tokens, encode_tokens
from .luma_layer import CellLayer, Layers, decode_layers, encode_layers, layer_shape

MAGIC = b"TOKC"
CHUNK_MAGIC = b"CHNK"
INDEX_MAGIC = b"TIDX"
TRAILER_MAGIC = b"TEND"
VERSION = (1, 10)

MAX_HEADER_BODY = 1 << 20
MAX_AUDIO_BYTES = 16 << 20
MAX_AUDIO_PACKETS = 4096
MAX_LAYER_BYTES = 16 << 20
MAX_EXTRADATA = 1 << 20
MAX_SIZE = 16384

_PREFIX = struct.Struct("<4sBBI")  # magic, major, minor, body_size
_CHUNK = struct.Struct("<4sIQIHIHI")  # magic, index, first_frame, frames, token_t, token_bytes, packets, audio_bytes
_LAYER_BYTES = struct.Struct("<I")  # since 1.7, in files with coarse layers: the chunk's layer payload size
LUMA_LAYER, CHROMA_LAYERS = 1, 2  # Header.luma_layer: chunks may carry a Y' layer (1.7) / Y', Cb and Cr layers (1.8)
_ENTRY = struct.Struct("<QIQ")  # first_frame, frames, offset
_TRAILER = struct.Struct("<Q4s")
_PACKET = struct.Struct("<qII")  # pts, duration, size
_CRC = struct.Struct("<I")


class TokError(ValueError):
    """A .tok file that cannot be read: the message is one line for the user."""


@dataclass(frozen=True)
class AudioTrack:
    """The source's audio stream, copied packet by packet."""

    codec: str
    rate: int
    layout: str
    time_base: Fraction
    extradata: bytes = b""


@dataclass(frozen=True)
class AudioPacket:
    pts: int
    duration: int
    data: bytes


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs before the first chunk (FORMAT.md, FileHeader)."""

    model: str
    fingerprint: str  # 16 hex digits
    width: int
    height: int
    padded_width: int
    padded_height: int
    fps: Fraction
    frames: int  # 0 while a live file grows
    chunk_frames: int
    temporal_factor: int
    spatial_factor: int
    bits: int
    quality: int = 0
    entropy: EntropyParams = field(default_factory=EntropyParams)
    audio: AudioTrack | None = None
    # The size frames were resampled to before the tokenizer (`encode --scale`);
    # 0: the displayed size (files before version 1.3, and unscaled ones).
    coded_width: int = 0
    coded_height: int = 0
    # Since 1.5: the Y' codes the tokenizer's RGB 0 and 1 stand for, and the
    # source's matrix (0: BT.601, 1: BT.709); 16, 235 (and absent before 1.5):
    # the usual conversion. Wider for sources with super-whites or -blacks.
    luma_black: int = 16
    luma_white: int = 235
    luma_matrix: int = 0
    # Since 1.7: 1 if the chunks may carry a coarse Y' layer (`bitstream.luma_layer`),
    # since 1.8: 2 if they may carry Y', Cb and Cr layers; 0 (and absent before 1.7): none.
    luma_layer: int = 0
    # Since 1.9: the unsharp mask of the decoded luma (`codec.sharpen`), amount,
    # sigma and threshold in 1/16ths; 0, 0, 0 (and absent before 1.9): none.
    sharpen_amount: int = 0
    sharpen_sigma: int = 0
    sharpen_threshold: int = 0

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) the tokenizer coded; the decoder resamples its output to (width, height)."""
        return self.coded_width or self.width, self.coded_height or self.height

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(T', H', W') of a full chunk."""
        return (
            self.chunk_token_frames(self.chunk_frames),
            self.padded_height // self.spatial_factor,
            self.padded_width // self.spatial_factor,
        )

    def chunk_token_frames(self, frames: int) -> int:
        """Latent frames of a chunk holding `frames` real frames."""
        return 1 + -(-(frames - 1) // self.temporal_factor)

    def validate(self) -> None:
        """Raise TokError if the fields are inconsistent (a forged or corrupt header)."""
        checks = [
            (0 < len(self.model.encode()) <= 64, "model name"),
            (1 <= self.width <= MAX_SIZE and 1 <= self.height <= MAX_SIZE, "frame size"),
            (self.temporal_factor >= 1 and self.spatial_factor >= 1, "compression factors"),
            (0 <= self.coded_width <= MAX_SIZE and 0 <= self.coded_height <= MAX_SIZE, "coded size"),
            (self.padded_width == -(-self.coded_size[0] // self.spatial_factor) * self.spatial_factor, "padded width"),
            (self.padded_height == -(-self.coded_size[1] // self.spatial_factor) * self.spatial_factor,
             "padded height"),
            (self.fps > 0, "frame rate"),
            (self.chunk_frames >= 1 and (self.chunk_frames - 1) % self.temporal_factor == 0, "chunk frames"),
            (self.chunk_token_frames(self.chunk_frames) < 1 << 16, "chunk frames"),
            (1 <= self.bits <= 30, "bits per token"),
            (0 <= self.luma_black < self.luma_white <= 255 and self.luma_matrix in (0, 1), "luma range"),
            (self.luma_layer in (0, LUMA_LAYER, CHROMA_LAYERS), "luma layer flag"),
            (all(0 <= v <= 255 for v in (self.sharpen_amount, self.sharpen_sigma, self.sharpen_threshold))
             and (self.sharpen_sigma > 0 or self.sharpen_amount == 0), "sharpening"),
        ]
        for ok, what in checks:
            if not ok:
                raise TokError(f"invalid header: bad {what}")

    # -- serialisation ----------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The header as JSON-ready data (the `meta` of a token archive)."""
        d = asdict(self)
        d["fps"] = [self.fps.numerator, self.fps.denominator]
        if self.audio is not None:
            d["audio"]["time_base"] = [self.audio.time_base.numerator, self.audio.time_base.denominator]
            d["audio"]["extradata"] = self.audio.extradata.hex()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Header":
        """Inverse of to_json; raises KeyError, TypeError or ValueError on bad data."""
        d = dict(d)
        d["fps"] = Fraction(*d["fps"])
        d["entropy"] = EntropyParams(**d["entropy"])
        if d.get("audio"):
            a = dict(d["audio"])
            a["time_base"] = Fraction(*a["time_base"])
            a["extradata"] = bytes.fromhex(a["extradata"])
            d["audio"] = AudioTrack(**a)
        return cls(**d)

    def to_bytes(self) -> bytes:
        t, h, w = self.token_grid
        body = bytearray()
        body += _str8(self.model)
        body += bytes.fromhex(self.fingerprint)
        body += struct.pack("<IIII", self.width, self.height, self.padded_width, self.padded_height)
        body += struct.pack("<IIQI", self.fps.numerator, self.fps.denominator, self.frames, self.chunk_frames)
        body += struct.pack("<BBHHHBB", self.temporal_factor, self.spatial_factor, t, h, w, self.bits, self.quality)
        params = _entropy_params_bytes(self.entropy)
        body += struct.pack("<BH", self.entropy.model_id, len(params)) + params
        if self.audio is None:
            body += b"\x00"
        else:
            a = self.audio
            body += b"\x01" + _str8(a.codec) + struct.pack("<I", a.rate) + _str8(a.layout)
            body += struct.pack("<III", a.time_base.numerator, a.time_base.denominator, len(a.extradata))
            body += a.extradata
        body += struct.pack("<II", self.coded_width, self.coded_height)  # since 1.3; 0: the displayed size
        body += struct.pack("<BBB", self.luma_black, self.luma_white, self.luma_matrix)  # since 1.5
        body += struct.pack("<B", self.luma_layer)  # since 1.7
        body += struct.pack("<BBB", self.sharpen_amount, self.sharpen_sigma, self.sharpen_threshold)  # since 1.9
        head = _PREFIX.pack(MAGIC, *VERSION, len(body)) + bytes(body)
        return head + _CRC.pack(zlib.crc32(head))

    @classmethod
    def read(cls, f: BinaryIO) -> "Header":
        prefix = f.read(_PREFIX.size)
        if prefix[:4] != MAGIC:
            raise TokError("not a .tok file (bad magic)")
        if len(prefix) < _PREFIX.size:
            raise TokError("truncated .tok file (header incomplete)")
        magic, major, minor, size = _PREFIX.unpack(prefix)
        if major != VERSION[0]:
            raise TokError(f"unsupported .tok version {major}.{minor} (this tokcodec reads {VERSION[0]}.x)")
        if size > MAX_HEADER_BODY:
            raise TokError("invalid header: size out of range")
        body = f.read(size)
        crc = f.read(4)
        if len(body) < size or len(crc) < 4:
            raise TokError("truncated .tok file (header incomplete)")
        if zlib.crc32(prefix + body) != _CRC.unpack(crc)[0]:
            raise TokError("corrupt .tok header (CRC mismatch)")
        try:
            header = cls._parse(_Cursor(body))
        except (struct.error, UnicodeDecodeError, ValueError, ZeroDivisionError) as exc:
            raise TokError(f"invalid header: {exc}") from None
        header.validate()
        return header

    @classmethod
    def _parse(cls, c: "_Cursor") -> "Header":
        model = c.str8()
        fingerprint = c.take(8).hex()
        width, height, pw, ph = c.unpack("<IIII")
        fps_num, fps_den, frames, chunk_frames = c.unpack("<IIQI")
        tf, sf, _t, _h, _w, bits, quality = c.unpack("<BBHHHBB")
        model_id, n = c.unpack("<BH")
        entropy = _entropy_params_from(model_id, c.take(n))
        audio = None
        if c.unpack("<B")[0]:
            codec = c.str8()
            (rate,) = c.unpack("<I")
            layout = c.str8()
            tb_num, tb_den, n_extra = c.unpack("<III")
            if n_extra > MAX_EXTRADATA:
                raise ValueError("audio extradata too large")
            audio = AudioTrack(codec, rate, layout, Fraction(tb_num, tb_den), c.take(n_extra))
        coded = c.unpack("<II") if c.remaining() >= 8 else (0, 0)  # absent before 1.3
        luma = c.unpack("<BBB") if c.remaining() >= 3 else (16, 235, 0)  # absent before 1.5
        layer = c.unpack("<B")[0] if c.remaining() >= 1 else 0  # absent before 1.7
        sharpen = c.unpack("<BBB") if c.remaining() >= 3 else (0, 0, 0)  # absent before 1.9
        if fps_den == 0:
            raise ValueError("zero frame rate denominator")
        return cls(model, fingerprint, width, height, pw, ph, Fraction(fps_num, fps_den), frames, chunk_frames,
                   tf, sf, bits, quality, entropy, audio, *coded, *luma, layer, *sharpen)


def _str8(s: str) -> bytes:
    b = s.encode()
    if len(b) > 255:
        raise ValueError(f"string too long for the header: {s[:20]}...")
    return bytes([len(b)]) + b


def _entropy_params_bytes(p: EntropyParams) -> bytes:
    """The integer fields of EntropyParams other than model_id, in order, each u32."""
    values = [getattr(p, f.name) for f in fields(p) if f.name != "model_id"]
    return struct.pack(f"<{len(values)}I", *values)


def _entropy_params_from(model_id: int, data: bytes) -> EntropyParams:
    names = [f.name for f in fields(EntropyParams) if f.name != "model_id"]
    if len(data) % 4 or len(data) // 4 > len(names):
        raise ValueError("entropy parameters of unknown layout")
    values = struct.unpack(f"<{len(data) // 4}I", data)
    params = EntropyParams(model_id=model_id, **dict(zip(names, values)))
    try:
        params.check(ValueError)
    except EntropyError as exc:
        raise ValueError(str(exc)) from None
    return params


class _Cursor:
    """Bounds-checked reading from a bytes object."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("header body too short")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def str8(self) -> str:
        return self.take(self.take(1)[0]).decode()


@dataclass(frozen=True)
class ChunkEntry:
    """Where a chunk is and which frames it holds (an index row)."""

    index: int
    first_frame: int
    frames: int
    offset: int

    @property
    def end_frame(self) -> int:
        return self.first_frame + self.frames


@dataclass
class Chunk:
    """A decoded chunk: its frames' token grid and audio packets."""

    index: int
    first_frame: int
    frames: int
    tokens: np.ndarray  # int64 (T', H', W')
    audio: list[AudioPacket]
    payload_bytes: int  # size of the entropy-coded token payload
    layers: Layers = Layers()  # the coarse layers (files with them; empty where a chunk has none)
    layer_bytes: int = 0  # their payload's size


def _end_frame(entries: list[ChunkEntry]) -> int:
    """Frames covered by chunks 0 .. len(entries) - 1."""
    return entries[-1].end_frame if entries else 0


def short_chunks(entries: list[ChunkEntry], chunk_frames: int) -> int:
    """Chunks before the last that hold fewer than `chunk_frames` frames: those the encoder ended
    early (at a scene cut, or where the picture moves)."""
    return sum(e.frames < chunk_frames for e in entries[:-1])


def layer_shape_of(header: Header, frames: int, layer: CellLayer) -> tuple[int, int, int]:
    """(G, h, w) a chunk of `frames` frames needs for `layer`'s cells (displayed size)."""
    return layer_shape(frames, header.height, header.width, layer.block, layer.group)


def max_token_bytes(header: Header, token_t: int) -> int:
    """Upper bound on a chunk's token payload: twice raw size plus slack."""
    _, h, w = header.token_grid
    return 2 * -(-(token_t * h * w * header.bits) // 8) + 1024


# ---------------------------------------------------------------- writing


class TokWriter:
    """Writes a .tok file chunk by chunk.

    By default the file is written under a temporary name and renamed into
    place by `close()`, so a failed run leaves nothing; `close()` also fills
    in the frame count and appends the index. With `atomic=False` the file
    is written in place and is readable while it grows (live ingest).
    `prior` is the entropy prior that ``header.entropy.prior`` names, if any.
    """

    def __init__(
        self, path: str | os.PathLike, header: Header, *, atomic: bool = True, prior: EntropyPrior | None = None
    ) -> None:
        header.validate()
        if bool(header.entropy.prior) != (prior is not None) or (prior is not None and prior.id != header.entropy.prior):
            raise ValueError("the header's entropy prior and the prior given differ")
        self.path = Path(path)
        self.header = header
        self.prior = prior
        self.entries: list[ChunkEntry] = []
        self.payload_bytes = 0  # entropy-coded tokens
        self.audio_bytes = 0  # stored audio packets, their small headers included
        self.layer_bytes = 0  # coarse layers
        self._atomic = atomic
        if atomic:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent or ".")
            self._tmp: Path | None = Path(tmp)
            self._f: BinaryIO | None = os.fdopen(fd, "w+b")
        else:
            self._tmp = None
            self._f = open(self.path, "w+b")
        self._header_size = len(header.to_bytes())
        self._f.write(replace(header, frames=0).to_bytes())
        self._f.flush()

    @property
    def frames(self) -> int:
        return _end_frame(self.entries)

    def payload_size(self, tokens: np.ndarray) -> int:
        """Bytes the entropy coder would write for a chunk of `tokens` (T', H', W')
        (an encoder's rate estimate: nothing is written)."""
        return len(encode_tokens(tokens, self.header.bits, self.header.entropy, self.prior))

    def token_payload(self, tokens: np.ndarray) -> bytes:
        """The entropy-coded payload of a chunk of `tokens` (what `write_chunk` writes for them)."""
        return encode_tokens(tokens, self.header.bits, self.header.entropy, self.prior)

    def write_chunk(self, frames: int, tokens: np.ndarray, audio: Iterable[AudioPacket] = (),
                    layers: Layers = Layers(), payload: bytes | None = None) -> ChunkEntry:
        """Entropy-code one chunk of `frames` real frames and append it, with
        its coarse `layers` (a file whose header has ``luma_layer``, and Cb
        and Cr only where it is `CHROMA_LAYERS`). `payload`:
        `token_payload(tokens)` if the caller has it already."""
        assert self._f is not None, "writer is closed"
        h = self.header
        if not 1 <= frames <= h.chunk_frames:
            raise ValueError(f"a chunk holds 1 to {h.chunk_frames} frames, not {frames}")
        expected = (h.chunk_token_frames(frames), *h.token_grid[1:])
        if tokens.shape != expected:
            raise ValueError(f"chunk tokens have shape {tokens.shape}, expected {expected}")
        if layers and (not h.luma_layer or any(p is not None and p.values.shape != layer_shape_of(h, frames, p)
                                                for p in layers.planes)):
            raise ValueError("this chunk's coarse layers do not fit the file (none in its header, or another shape)")
        payload = self.token_payload(tokens) if payload is None else payload
        packets = list(audio)
        audio_blob = b"".join(_PACKET.pack(p.pts, p.duration, len(p.data)) + p.data for p in packets)
        if len(packets) > MAX_AUDIO_PACKETS or len(audio_blob) > MAX_AUDIO_BYTES:
            raise ValueError("too much audio for one chunk")
        layer_blob = encode_layers(layers, h.luma_layer == CHROMA_LAYERS) if h.luma_layer else b""
        entry = ChunkEntry(len(self.entries), self.frames, frames, self._f.tell())
        head = _CHUNK.pack(CHUNK_MAGIC, entry.index, entry.first_frame, frames, expected[0], len(payload),
                           len(packets), len(audio_blob))
        if h.luma_layer:
            head += _LAYER_BYTES.pack(len(layer_blob))
        crc = zlib.crc32(layer_blob, zlib.crc32(audio_blob, zlib.crc32(payload, zlib.crc32(head))))
        self._f.write(head + payload + audio_blob + layer_blob + _CRC.pack(crc))
        self._f.flush()
        self.entries.append(entry)
        self.payload_bytes += len(payload)
        self.audio_bytes += len(audio_blob)
        self.layer_bytes += len(layer_blob)
        return entry

    def close(self) -> None:
        """Write the index and trailer, fill in the frame count, and put the file in place."""
        if self._f is None:
            return
        f = self._f
        index_offset = f.tell()
        body = INDEX_MAGIC + struct.pack("<I", len(self.entries))
        body += b"".join(_ENTRY.pack(e.first_frame, e.frames, e.offset) for e in self.entries)
        f.write(body + _CRC.pack(zlib.crc32(body)) + _TRAILER.pack(index_offset, TRAILER_MAGIC))
        f.seek(0)
        f.write(replace(self.header, frames=self.frames).to_bytes())
        f.close()
        self._f = None
        if self._tmp is not None:
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Stop and remove what was written (the temporary file, or the live file)."""
        if self._f is not None:
            self._f.close()
            self._f = None
            (self._tmp or self.path).unlink(missing_ok=True)

    def __enter__(self) -> "TokWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------- reading


class TokReader:
    """Random access to the chunks of a .tok file.

    Opening reads the header and the index (or, for a file without one,
    walks the chunk headers). `read_chunk` checks the CRC and decodes the
    tokens of one chunk; `chunks(start, frames)` yields those covering a
    frame range, and only those are read. Tokens coded with an entropy prior
    need it: `prior_for(header)` returns it (or None if it is not available).
    """

    def __init__(
        self, path: str | os.PathLike, prior_for: Callable[[Header], EntropyPrior | None] | None = None
    ) -> None:
        self.path = Path(path)
        self.prior: EntropyPrior | None = None
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except IsADirectoryError:
            raise TokError(f"{path}: is a directory") from None
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            if self.size == 0:
                raise TokError("empty file")
            self.header = Header.read(self._f)
            if self.header.entropy.prior and prior_for is not None:
                self.prior = prior_for(self.header)
            self._data_start = self._f.tell()
            self._head_size = _CHUNK.size + (_LAYER_BYTES.size if self.header.luma_layer else 0)
            self.entries = self._read_index() or self._scan()
            self._check_complete()
        except BaseException:
            self._f.close()
            raise

    @property
    def frames(self) -> int:
        return _end_frame(self.entries)

    def _read_index(self) -> list[ChunkEntry] | None:
        """The index through the trailer, or None when the file has no valid trailer."""
        if self.size < self._data_start + _TRAILER.size:
            return None
        self._f.seek(self.size - _TRAILER.size)
        offset, magic = _TRAILER.unpack(self._f.read(_TRAILER.size))
        if magic != TRAILER_MAGIC or not self._data_start <= offset <= self.size - _TRAILER.size - 12:
            return None
        self._f.seek(offset)
        head = self._f.read(8)
        magic, count = struct.unpack("<4sI", head)
        if magic != INDEX_MAGIC or offset + 12 + count * _ENTRY.size != self.size - _TRAILER.size:
            return None
        rows = self._f.read(count * _ENTRY.size)
        (crc,) = _CRC.unpack(self._f.read(4))
        if zlib.crc32(head + rows) != crc:
            raise TokError("corrupt .tok index (CRC mismatch)")
        entries = [ChunkEntry(i, *_ENTRY.unpack_from(rows, i * _ENTRY.size)) for i in range(count)]
        self._check_entries(entries, offset)
        return entries

    def _check_entries(self, entries: list[ChunkEntry], data_end: int) -> None:
        prev_end, prev_offset = 0, self._data_start - 1
        for e in entries:
            if (e.first_frame != prev_end or not 1 <= e.frames <= self.header.chunk_frames
                    or not prev_offset < e.offset < data_end):
                raise TokError("corrupt .tok index (inconsistent entry)")
            prev_end, prev_offset = e.end_frame, e.offset

    def _scan(self) -> list[ChunkEntry]:
        """Walk the chunk headers of a file without an index (live or cut short)."""
        entries: list[ChunkEntry] = []
        offset = self._data_start
        while offset + self._head_size <= self.size:
            self._f.seek(offset)
            head = self._f.read(self._head_size)
            if head[:4] == INDEX_MAGIC:
                break  # an index whose trailer was damaged
            fields_ = self._chunk_fields(head, len(entries), offset)
            end = offset + self._head_size + fields_[4] + fields_[6] + fields_[7] + 4
            if end > self.size:
                break  # the last chunk is incomplete
            if fields_[1] != _end_frame(entries):
                raise TokError(f"chunk {len(entries)} is corrupt (frame range)")
            entries.append(ChunkEntry(len(entries), fields_[1], fields_[2], offset))
            offset = end
        return entries

    def _check_complete(self) -> None:
        h = self.header
        if h.frames and self.frames != h.frames:
            raise TokError(f"truncated .tok file: {self.frames} of {h.frames} frames present")
        if not self.entries:
            raise TokError("truncated .tok file: no complete chunk")

    def _chunk_fields(self, head: bytes, index: int, offset: int) -> tuple:
        if len(head) < self._head_size:
            raise TokError(f"truncated .tok file (chunk {index} incomplete)")
        magic, idx, first, frames, token_t, token_bytes, packets, audio_bytes = _CHUNK.unpack_from(head)
        layer_bytes = _LAYER_BYTES.unpack_from(head, _CHUNK.size)[0] if self.header.luma_layer else 0
        h = self.header
        if magic != CHUNK_MAGIC or idx != index:
            raise TokError(f"chunk {index} is corrupt (no chunk at offset {offset})")
        if (not 1 <= frames <= h.chunk_frames or token_t != h.chunk_token_frames(frames)
                or token_bytes > max_token_bytes(h, token_t) or packets > MAX_AUDIO_PACKETS
                or audio_bytes > MAX_AUDIO_BYTES or layer_bytes > MAX_LAYER_BYTES):
            raise TokError(f"chunk {index} is corrupt (bad chunk header)")
        return magic, first, frames, token_t, token_bytes, packets, audio_bytes, layer_bytes

    def read_chunk(self, i: int, tokens: bool = True) -> Chunk:
        """Read and check chunk `i`; entropy-decode its tokens unless `tokens` is False."""
        return self._read_chunk(self._f, i, tokens)

    def chunk_bytes(self, i: int) -> bytes:
        """Chunk `i` exactly as stored (its header, payloads and CRC), after checking its CRC.

        A file's header bytes followed by its chunks' bytes, in order, form
        a valid .tok (without index): what a token stream sends.
        """
        head, body, _ = self._read_checked(self._f, i)
        return head + body

    def _read_checked(self, f: BinaryIO, i: int) -> tuple[bytes, bytes, tuple]:
        """Chunk `i`'s header and body (payloads + CRC), the CRC and the index checked; and its fields."""
        e = self.entries[i]
        f.seek(e.offset)
        head = f.read(self._head_size)
        fields_ = self._chunk_fields(head, i, e.offset)
        _, first, frames, token_t, token_bytes, packets, audio_bytes, layer_bytes = fields_
        size = token_bytes + audio_bytes + layer_bytes
        body = f.read(size + 4)
        if len(body) < size + 4:
            raise TokError(f"truncated .tok file (chunk {i} incomplete)")
        (crc,) = _CRC.unpack_from(body, size)
        if zlib.crc32(body[:size], zlib.crc32(head)) != crc:
            raise TokError(f"chunk {i} is corrupt (CRC mismatch)")
        if (first, frames) != (e.first_frame, e.frames):
            raise TokError(f"chunk {i} does not match the index")
        return head, body, fields_

    def _read_chunk(self, f: BinaryIO, i: int, with_tokens: bool) -> Chunk:
        _, body, (_, first, frames, token_t, token_bytes, packets, audio_bytes, layer_bytes) = self._read_checked(f, i)
        h = self.header
        tokens = np.zeros((0, 0, 0), np.int64)
        if with_tokens:
            need = h.entropy.prior
            if need and (self.prior is None or self.prior.id != need):
                raise TokError(f"the tokens are coded with entropy prior {need:08x} of model {h.model}, "
                               "which this tokcodec does not have")
            try:
                tokens = decode_tokens(body[:token_bytes], (token_t, *h.token_grid[1:]), h.bits, h.entropy,
                                       self.prior)
            except EntropyError as exc:
                raise TokError(f"chunk {i} is corrupt ({exc})") from None
        audio = _parse_packets(memoryview(body)[token_bytes : token_bytes + audio_bytes], packets, i)
        try:
            layers = decode_layers(memoryview(body)[token_bytes + audio_bytes : token_bytes + audio_bytes + layer_bytes],
                                   frames, h.height, h.width, h.luma_layer == CHROMA_LAYERS)
        except ValueError as exc:
            raise TokError(f"chunk {i} is corrupt ({exc})") from None
        return Chunk(i, first, frames, tokens, audio, token_bytes, layers, layer_bytes)

    def audio_packets(self, start: int = 0, frames: int | None = None) -> Iterator[AudioPacket]:
        """Audio packets of the chunks covering a frame range, read lazily.

        Uses its own file handle, so it can be consumed while `chunks()` runs.
        """
        entries = self.entries_for(start, frames)
        with open(self.path, "rb") as f:
            for e in entries:
                yield from self._read_chunk(f, e.index, with_tokens=False).audio

    def entries_for(self, start: int = 0, frames: int | None = None) -> list[ChunkEntry]:
        """Index entries of the chunks that hold frames [start, start + frames)."""
        if not 0 <= start < self.frames:
            raise TokError(f"start frame {start} is beyond the end of the video ({self.frames} frames)")
        end = self.frames if frames is None else min(self.frames, start + frames)
        return [e for e in self.entries if e.end_frame > start and e.first_frame < end]

    def chunks(self, start: int = 0, frames: int | None = None) -> Iterator[Chunk]:
        """Decoded chunks covering a frame range, read through the index."""
        for e in self.entries_for(start, frames):
            yield self.read_chunk(e.index)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TokReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_packets(data: memoryview, count: int, chunk: int) -> list[AudioPacket]:
    packets, pos = [], 0
    for _ in range(count):
        if pos + _PACKET.size > len(data):
            raise TokError(f"chunk {chunk} is corrupt (audio packets)")
        pts, duration, size = _PACKET.unpack_from(data, pos)
        pos += _PACKET.size
        if pos + size > len(data):
            raise TokError(f"chunk {chunk} is corrupt (audio packets)")
        packets.append(AudioPacket(pts, duration, bytes(data[pos : pos + size])))
        pos += size
    if pos != len(data):
        raise TokError(f"chunk {chunk} is corrupt (audio packets)")
    return packets
