"""Import tokcodec straight from this checkout, for the lent GPU machines.

Those machines have PyTorch with CUDA but no PyAV, no constriction and no
package index: nothing is installed there, so `tokcodec.*` is mapped onto
the checkout's folders as pyproject.toml maps them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def import_checkout(stub_av: bool = False) -> None:
    """Make `tokcodec.*` importable; `stub_av` puts an empty `av` in place of
    PyAV (only for code that never decodes video through it)."""
    if stub_av:
        av = types.ModuleType("av")
        av.error = types.ModuleType("av.error")  # type: ignore[attr-defined]
        sys.modules.update({"av": av, "av.error": av.error})  # type: ignore[attr-defined]
    if importlib.util.find_spec("tokcodec") is None:
        pkg = types.ModuleType("tokcodec")
        pkg.__path__ = [str(ROOT / "tokcodec"), str(ROOT)]  # type: ignore[attr-defined]
        sys.modules["tokcodec"] = pkg
