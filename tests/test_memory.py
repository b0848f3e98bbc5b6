"""Process-wide memory settings."""

from __future__ import annotations

import os

from tokcodec.memory import HUGE_PAGES_VARIABLE, prefer_huge_pages


def test_prefer_huge_pages_keeps_the_users_choice(monkeypatch) -> None:
    """Importing tokcodec asks torch's allocator for huge pages unless the
    user set the variable; 0 turns it off."""
    monkeypatch.delenv(HUGE_PAGES_VARIABLE, raising=False)
    assert prefer_huge_pages() and os.environ[HUGE_PAGES_VARIABLE] == "1"
    monkeypatch.setenv(HUGE_PAGES_VARIABLE, "0")
    assert not prefer_huge_pages() and os.environ[HUGE_PAGES_VARIABLE] == "0"
