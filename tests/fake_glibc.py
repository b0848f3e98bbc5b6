"""A stand-in for glibc's mallopt and malloc_trim, for `tokcodec.memory`'s tests."""

from __future__ import annotations

import pytest

from tokcodec import memory


class FakeGlibc:
    """Records each call: ("mallopt", param, value) or ("malloc_trim", pad)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1

    @property
    def trims(self) -> int:
        return sum(c[0] == "malloc_trim" for c in self.calls)


def install_fake_glibc(monkeypatch: pytest.MonkeyPatch, reuse: bool = True) -> FakeGlibc:
    """`tokcodec.memory` calls a FakeGlibc from now on; `reuse`: with TOKCODEC_REUSE_MEMORY=1."""
    libc = FakeGlibc()
    monkeypatch.setattr(memory, "_LIBC", libc)
    if reuse:
        monkeypatch.setenv(memory.REUSE_VARIABLE, "1")
    else:
        monkeypatch.delenv(memory.REUSE_VARIABLE, raising=False)
    return libc
