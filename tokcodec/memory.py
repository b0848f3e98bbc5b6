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
"""

from __future__ import annotations

import os

HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def prefer_huge_pages() -> bool:
    """Ask PyTorch's CPU allocator for transparent huge pages, unless the user
    chose otherwise; whether it is asked for. Has no effect where torch has
    already allocated, or where the kernel's THP mode is "never"."""
    return os.environ.setdefault(HUGE_PAGES_VARIABLE, "1") != "0"
