"""Process-wide memory settings."""

from __future__ import annotations

import os

import pytest

from fake_glibc import install_fake_glibc
from tokcodec import memory
from tokcodec.memory import HUGE_PAGES_VARIABLE, prefer_huge_pages


def test_prefer_huge_pages_keeps_the_users_choice(monkeypatch) -> None:
    """Importing tokcodec asks torch's allocator for huge pages unless the
    user set the variable; 0 turns it off."""
    monkeypatch.delenv(HUGE_PAGES_VARIABLE, raising=False)
    assert prefer_huge_pages() and os.environ[HUGE_PAGES_VARIABLE] == "1"
    monkeypatch.setenv(HUGE_PAGES_VARIABLE, "0")
    assert not prefer_huge_pages() and os.environ[HUGE_PAGES_VARIABLE] == "0"


def test_reuse_freed_memory_sets_and_restores_glibc(monkeypatch) -> None:
    """Inside, glibc keeps freed memory for reuse; the last of nested callers
    to leave restores the usual settings and hands the kept memory back."""
    libc = install_fake_glibc(monkeypatch, reuse=False)
    calls = libc.calls
    with memory.reuse_freed_memory() as reusing:  # not asked for: nothing changes
        assert not reusing and not calls
    monkeypatch.setenv(memory.REUSE_VARIABLE, "1")
    with memory.reuse_freed_memory() as reusing:
        assert reusing
        set_up = [("mallopt", memory._M_MMAP_THRESHOLD, memory.REUSE_BELOW),
                  ("mallopt", memory._M_TOP_PAD, memory.REUSE_TOP_PAD)]
        assert calls == set_up
        with memory.reuse_freed_memory():  # nested: nothing more to set, nothing restored yet
            pass
        assert calls == set_up
    assert calls[2:] == [("mallopt", memory._M_MMAP_THRESHOLD, memory._DEFAULT_MMAP_THRESHOLD),
                         ("mallopt", memory._M_TOP_PAD, memory._DEFAULT_TOP_PAD), ("malloc_trim", 0)]
    # restored on an exception too
    calls.clear()
    with pytest.raises(RuntimeError), memory.reuse_freed_memory():
        raise RuntimeError("boom")
    assert calls[-1] == ("malloc_trim", 0) and memory._HELD[0] == 0


def test_release_kept_memory_trims_only_inside_reuse(monkeypatch) -> None:
    """Between the refinement's segments: what glibc keeps goes back, but
    only where `reuse_freed_memory` is keeping it."""
    libc = install_fake_glibc(monkeypatch)
    memory.release_kept_memory()  # outside: nothing kept, nothing to do
    assert libc.trims == 0
    with memory.reuse_freed_memory():
        memory.release_kept_memory()
        assert libc.trims == 1
    assert libc.trims == 2  # and once more on leaving
    monkeypatch.delenv(memory.REUSE_VARIABLE)
    with memory.reuse_freed_memory():  # not asked for: the settings stay, nothing trimmed
        memory.release_kept_memory()
    assert libc.trims == 2


def test_reuse_freed_memory_is_a_no_op_without_glibc(monkeypatch) -> None:
    monkeypatch.setenv(memory.REUSE_VARIABLE, "1")
    monkeypatch.setattr(memory, "_LIBC", None)
    with memory.reuse_freed_memory() as reusing:
        assert not reusing


def test_this_machines_glibc_is_found(monkeypatch) -> None:
    """On Linux with glibc (where tokcodec is developed and CI runs) the settings take effect."""
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert memory._glibc() is not None
    monkeypatch.setenv(memory.REUSE_VARIABLE, "1")
    with memory.reuse_freed_memory() as reusing:
        assert reusing
