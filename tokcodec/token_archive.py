"""The .npz token archive of `tokcodec tokens` and `tokcodec pack`, in constant memory.

An .npz is a zip of .npy files. The token grids of a long video do not fit
in memory, so the `tokens` array is streamed into (and out of) its zip entry
one chunk at a time; the archive stays a plain .npz that `numpy.load` reads.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Iterator

import numpy as np

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
