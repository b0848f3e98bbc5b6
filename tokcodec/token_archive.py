"""The .npz token archive: `tokcodec tokens` (export) and `tokcodec pack`, in constant memory.

An .npz is a zip of .npy files. The token grids of a long video do not fit
in memory, so the `tokens` array is streamed into (and out of) its zip entry
one chunk at a time; the archive stays a plain .npz that `numpy.load` reads.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tokcodec.bitstream.container import CHROMA_LAYERS, AudioPacket, Header, TokWriter, layer_shape_of
from tokcodec.bitstream.luma_layer import CellLayer, Layers

from .api import check_output
from .files import EncodeReport, header_span, named_errors, open_tok
from .priors import prior_for

_FORMAT = np.lib.format


def write_rows(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype, rows: Iterable[np.ndarray]) -> None:
    """Write array `name` of `shape` into the zip, one row of the first axis at a time."""
    dtype = np.dtype(dtype)
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        header = {"descr": _FORMAT.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        _FORMAT.write_array_header_2_0(f, header)
        count = 0
        for row in rows:
            row = np.ascontiguousarray(row, dtype=dtype)
            if row.shape != tuple(shape[1:]):
                raise ValueError(f"row of shape {row.shape} in an array of rows {tuple(shape[1:])}")
            f.write(row.tobytes())
            count += 1
    if count != shape[0]:
        raise ValueError(f"{count} rows written to an array of {shape[0]}")


def write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Write a (small) array whole."""
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        _FORMAT.write_array(f, np.asanyarray(array), allow_pickle=False)


def read_array(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """Read a (small) array whole."""
    with zf.open(name + ".npy") as f:
        return _FORMAT.read_array(f, allow_pickle=False)


def read_rows(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray]]:
    """Shape, dtype and a row-by-row reader of array `name` (C order, no objects)."""
    f = zf.open(name + ".npy")
    version = _FORMAT.read_magic(f)
    read_header = _FORMAT.read_array_header_1_0 if version == (1, 0) else _FORMAT.read_array_header_2_0
    shape, fortran_order, dtype = read_header(f)
    if fortran_order or dtype.hasobject or not shape:
        f.close()
        raise ValueError(f"{name}: not a C-ordered numeric array")
    row_bytes = math.prod(shape[1:]) * dtype.itemsize

    def rows() -> Iterator[np.ndarray]:
        with f:
            for _ in range(shape[0]):
                data = f.read(row_bytes)
                if len(data) < row_bytes:
                    raise ValueError(f"{name}: truncated")
                yield np.frombuffer(data, dtype).reshape(shape[1:])

    return shape, dtype, rows()


# ---------------------------------------------------------------- export and pack

_META = "meta"


def export_tokens(source: str | os.PathLike, output: str | os.PathLike, *, force: bool = False) -> int:
    """Write the token grids of a .tok file, with its header and audio, to an .npz.

    Arrays: `tokens` (chunks, T', H', W') int32 with the last chunk's missing
    latent frames zero-filled, `chunk_frames` (chunks,) real frames per chunk,
    `audio_data`/`audio_index` for the audio packets, `layer_index` (chunks,
    3 planes Y', Cb, Cr, 4: block, group, step, values; block 0 for a plane
    without one) and `layer_values` (int8, the values in chunk, then plane
    order) for the coarse layers, and `meta`, the header as JSON. Token grids are streamed chunk by chunk (constant memory).
    Returns the number of chunks.
    """
    check_output(output, force)
    output = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".npz", dir=output.parent)
    os.close(fd)
    try:
        with named_errors(source), open_tok(source) as reader, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            h = reader.header
            frames = np.array([e.frames for e in reader.entries], np.int64)
            audio_index, audio_blobs, layer_index, layer_values = [], [], [], []

            def grids() -> Iterator[np.ndarray]:
                for e in reader.entries:
                    c = reader.read_chunk(e.index)
                    audio_index.extend((e.index, p.pts, p.duration, len(p.data)) for p in c.audio)
                    audio_blobs.extend(p.data for p in c.audio)
                    for layer in c.layers.planes:
                        layer_index.append((0, 0, 0, 0) if layer is None else
                                           (layer.block, layer.group, layer.step, layer.values.size))
                        layer_values.append(np.zeros(0, np.int8) if layer is None else layer.values.reshape(-1))
                    grid = np.zeros(h.token_grid, np.int32)
                    grid[: c.tokens.shape[0]] = c.tokens
                    yield grid

            write_rows(zf, "tokens", (len(frames), *h.token_grid), np.int32, grids())
            write_array(zf, "chunk_frames", frames)
            write_array(zf, "audio_index", np.array(audio_index, np.int64).reshape(-1, 4))
            write_array(zf, "audio_data", np.frombuffer(b"".join(audio_blobs), np.uint8))
            write_array(zf, "layer_index", np.array(layer_index, np.int64).reshape(-1, 3, 4))
            write_array(zf, "layer_values", np.concatenate(layer_values).astype(np.int8))
            write_array(zf, _META, np.array(json.dumps(h.to_json())))
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(frames)


def pack_tokens(source: str | os.PathLike, output: str | os.PathLike, *, force: bool = False) -> EncodeReport:
    """Write a .tok file from an .npz made by `export_tokens` (or by a model).

    No tokenizer is run: the token grids are entropy-coded as they are, one
    chunk at a time, with the coarse layers the archive holds (a model that
    changes a chunk's tokens should leave its layers out: block 0; an
    archive's (chunks, 4) layer_index, from before chroma layers, holds Y' layers).
    """
    check_output(output, force)
    start = time.monotonic()
    try:
        zf = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{source}: not a token archive from `tokcodec tokens` ({exc})") from None
    with zf:
        try:
            meta = json.loads(str(read_array(zf, _META)))
            frames = read_array(zf, "chunk_frames")
            names = set(zf.namelist())
            audio_index = (read_array(zf, "audio_index") if "audio_index.npy" in names
                           else np.zeros((0, 4), np.int64))
            audio_data = read_array(zf, "audio_data").tobytes() if "audio_data.npy" in names else b""
            layer_index = read_array(zf, "layer_index") if "layer_index.npy" in names else np.zeros((0, 4), np.int64)
            layer_values = read_array(zf, "layer_values") if "layer_values.npy" in names else np.zeros(0, np.int8)
            shape, dtype, rows = read_rows(zf, "tokens")
        except Exception as exc:  # numpy's .npy header parser raises many types on garbage
            raise ValueError(f"{source}: not a token archive from `tokcodec tokens` ({exc})") from None
        try:
            header = Header.from_json(meta)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"{source}: bad token archive metadata ({exc})") from None
        if len(shape) != 4 or tuple(shape[1:]) != header.token_grid or len(frames) != shape[0]:
            raise ValueError(f"{source}: token grid {tuple(shape)} does not match its metadata {header.token_grid}")
        if dtype.kind not in "iu":
            raise ValueError(f"{source}: tokens must be integers, not {dtype}")
        packets: dict[int, list[AudioPacket]] = {}
        offset = 0
        for chunk, pts, duration, size in audio_index.tolist():
            packets.setdefault(chunk, []).append(AudioPacket(pts, duration, audio_data[offset : offset + size]))
            offset += size
        layers = _layers(header, frames.tolist(), layer_index, layer_values, source)
        prior = prior_for(header) if header.entropy.prior else None
        if header.entropy.prior and prior is None:
            raise ValueError(f"{source}: the tokens name entropy prior {header.entropy.prior:08x} of model "
                             f"{header.model}, which this tokcodec does not have")
        n = 0
        with TokWriter(output, header, prior=prior) as writer:
            for i, (grid, f) in enumerate(zip(_damage_checked(rows, source), frames.tolist())):
                if grid.size and (grid.min() < 0 or grid.max() >= 1 << header.bits):
                    raise ValueError(f"{source}: token values out of range for {header.bits}-bit tokens")
                writer.write_chunk(f, grid[: header.chunk_token_frames(f)].astype(np.int64), packets.get(i, []),
                                   layers.get(i, Layers()))
                n += grid.size
    return EncodeReport(str(output), writer.frames, len(writer.entries), Path(output).stat().st_size,
                        writer.payload_bytes, n, time.monotonic() - start, quality=header.quality,
                        bits=header.bits, coded_size=header.coded_size, luma_range=header_span(header),
                        layer_bytes=writer.layer_bytes, layers=len(layers))


def _layers(header: Header, frames: list[int], index: np.ndarray, values: np.ndarray,
            source: str | os.PathLike) -> dict[int, Layers]:
    """The archive's coarse layers by chunk (`export_tokens`' layer_index and layer_values)."""
    if not len(index):
        return {}
    if index.ndim == 2:  # (chunks, 4): Y' layers only
        index = np.concatenate([index[:, None], np.zeros((len(index), 2, 4), index.dtype)], axis=1)
    if index.shape != (len(frames), 3, 4) or int(index[..., 3].sum()) != len(values):
        raise ValueError(f"{source}: the coarse layers do not match the chunks")
    out, offset = {}, 0
    for i, rows in enumerate(index.tolist()):
        planes: list[CellLayer | None] = []
        for plane, (block, group, step, n) in zip(("Y'", "Cb", "Cr"), rows):
            planes.append(None)
            if block:
                try:
                    layer = CellLayer(block, group, step, np.zeros((0, 0, 0), np.int8))
                    shape = layer_shape_of(header, frames[i], layer)
                    if n != np.prod(shape) or not header.luma_layer:
                        raise ValueError("its shape does not fit the chunk")
                    if plane != "Y'" and header.luma_layer != CHROMA_LAYERS:
                        raise ValueError("the header has no chroma layers")
                    planes[-1] = CellLayer(block, group, step,
                                           values[offset : offset + n].reshape(shape).astype(np.int8))
                except ValueError as exc:
                    raise ValueError(f"{source}: bad {plane} layer of chunk {i} ({exc})") from None
            offset += n
        if any(p is not None for p in planes):
            out[i] = Layers(*planes)
    return out


def _damage_checked(rows: Iterator[np.ndarray], source: str | os.PathLike) -> Iterator[np.ndarray]:
    """Rows of a zip entry, with a damaged archive reported as one ValueError."""
    try:
        yield from rows
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{source}: damaged token archive ({exc})") from None
