"""Process-wide memory settings, applied before torch allocates anything.

The networks allocate tensors of hundreds of megabytes per layer (a
33-frame 1600x1200 chunk: up to 2 GB each). glibc hands each one a fresh
mmap, so every call page-faults its whole output in 4 KiB pages again; on a
virtual machine those faults cost more than the arithmetic (the 1600x1200
test card decoded with 33 s of its 47 s in the kernel). PyTorch's CPU
allocator asks for transparent huge pages (2 MiB) for allocations of 2 MiB
and more when THP_MEM_ALLOC_ENABLE is set, which takes 512x fewer faults for
the same memory (bench/RESULTS.md, "Huge pages for the networks' tensors").
PyTorch reads the variable once, at its first allocation, so it is set when
`tokcodec` is imported; a user's own THP_MEM_ALLOC_ENABLE (0 turns it off)
wins.
"""

from __future__ import annotations

import os

HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> bool:
    """Ask PyTorch's CPU allocator for transparent huge pages, unless the user
    chose otherwise; whether it is asked for. Has no effect where torch has
    already allocated, or where the kernel's THP mode is "never"."""
    return os.environ.setdefault(HUGE_PAGES_VARIABLE, "1") != "0"
