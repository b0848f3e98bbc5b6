"""Process-wide memory settings, applied before torch allocates anything.

The networks allocate a fresh tensor of tens to hundreds of megabytes per
layer. glibc hands each one a new mmap, so every call page-faults its whole
output in 4 KiB pages again; on a virtual machine those faults can cost more
than the arithmetic (the 1600x1200 test card decoded with 33 s of its 47 s
in the kernel). PyTorch's CPU allocator asks for transparent huge pages
(2 MiB) for allocations of 2 MiB and more when THP_MEM_ALLOC_ENABLE is set:
512x fewer faults for the same memory (bench/RESULTS.md, "Huge pages, and
norm, SiLU and padding in one pass").
PyTorch reads the variable once, at its first allocation, so it is set when
`tokcodec` is imported; a user's own THP_MEM_ALLOC_ENABLE (0 turns it off)
wins.

Encoding runs the networks chunk after chunk and the refinement's steps
allocate the same large tensors again and again; even with huge pages a
third of a 1080p encode's CPU time went to the kernel. With
TOKCODEC_REUSE_MEMORY=1, `reuse_freed_memory` has glibc keep freed memory
for the next allocation instead of unmapping it, and `release_kept_memory`
hands it back between the refinement's segments and the encoder's chunks:
a 33-frame 1080p encode takes 13% less time for 12% more memory on one
2-core VM (more time saved where faults cost more), but an unrefined one 72%
more memory (bench/RESULTS.md, "`TOKCODEC_REUSE_MEMORY=1` bounded to a
segment's memory"), so it is not the default.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"
REUSE_VARIABLE = "TOKCODEC_REUSE_MEMORY"  # 1: `reuse_freed_memory` takes effect

# glibc's mallopt parameters and the values `reuse_freed_memory` sets and restores.
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3
REUSE_BELOW = 1 << 30  # allocations up to this size come from the heap, reused once freed
REUSE_TOP_PAD = 1 << 30  # the heap grows this much more at a time
_DEFAULT_TOP_PAD = 128 * 1024  # glibc's
_DEFAULT_MMAP_THRESHOLD = 32 * 1024 * 1024  # where glibc's own sliding threshold ends up once tensors are freed


def prefer_huge_pages() -> bool:
    """Ask PyTorch's CPU allocator for transparent huge pages, unless the user
    chose otherwise; whether it is asked for. Has no effect where torch has
    already allocated, or where the kernel's THP mode is "never"."""
    return os.environ.setdefault(HUGE_PAGES_VARIABLE, "1") != "0"


def _glibc() -> ctypes.CDLL | None:
    """glibc (by its soname: it has mallopt and malloc_trim), or None where the C library is another."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must be there)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC: ctypes.CDLL | None | bool = False  # False: not looked for yet (only where the variable asks)
_HELD = [0]  # how many callers are inside `reuse_freed_memory` (threads may nest it)
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[bool]:
    """Where the user set TOKCODEC_REUSE_MEMORY=1: within, glibc serves
    allocations of up to `REUSE_BELOW` bytes from its heap and keeps what
    is freed for the next ones, instead of a fresh, page-faulted mapping
    each (a 33-frame 1080p encode on a 2-core Intel VM: 120 -> 104 s, peak
    memory 6.0 -> 6.7 GiB, with `release_kept_memory` between segments).
    On leaving (the last of nested or concurrent callers) the usual
    settings return and the kept memory goes back to the system
    (malloc_trim). Yields whether it took effect (glibc only)."""
    global _LIBC
    if os.environ.get(REUSE_VARIABLE) != "1":
        yield False
        return
    if _LIBC is False:
        _LIBC = _glibc()
    if _LIBC is None:
        yield False
        return
    with _HELD_LOCK:
        _HELD[0] += 1
        if _HELD[0] == 1:
            _LIBC.mallopt(_M_MMAP_THRESHOLD, REUSE_BELOW)
            _LIBC.mallopt(_M_TOP_PAD, REUSE_TOP_PAD)
    try:
        yield True
    finally:
        with _HELD_LOCK:
            _HELD[0] -= 1
            if _HELD[0] == 0:
                _LIBC.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD)
                _LIBC.mallopt(_M_TOP_PAD, _DEFAULT_TOP_PAD)
                _LIBC.malloc_trim(0)


def release_kept_memory() -> None:
    """Inside `reuse_freed_memory` (where it took effect), hand what glibc
    keeps back to the system now (malloc_trim); elsewhere nothing. The
    refinement calls it between segments: each segment's steps reuse what
    the one before freed, but the heap no longer grows past one segment's
    high-water mark (a 33-frame 1080p encode: 6.8 GB instead of 8.8, at the
    same speed; bench/RESULTS.md)."""
    with _HELD_LOCK:
        if _HELD[0] and _LIBC:
            _LIBC.malloc_trim(0)
