"""tokcodec: a neural video codec whose compressed form is MAGVIT-v2 LFQ tokens.

The public API (imported lazily, so `import tokcodec` stays light):

- `encode_file(src, dst.tok, ...)`, `decode_file(src.tok, dst.mp4, start=, frames=)`
- `read_tokens(path.tok, start=, frames=)` yields `TokenChunk`s (frame range, tokens)
- `open_tok(path)` gives random access to chunks; `tok_info(path)` a summary
- `export_tokens(src.tok, dst.npz)` / `pack_tokens(src.npz, dst.tok)`
- `reconstruct_file(src, dst.mp4)`: pixels -> tokens -> pixels in one go
"""

from __future__ import annotations

from typing import Any

from tokcodec.memory import prefer_huge_pages

prefer_huge_pages()  # before torch's first allocation: see tokcodec.memory

__version__ = "0.1.0"

# Frames per independently decodable chunk of `tokcodec encode` (1 + 4k).
# 33 frames cost 4-14% fewer bits than 17 at the same quality and are coded
# in segments with the causal caches carried over, so memory does not grow
# with them (bench/RESULTS.md, "Chunk length"); a seek decodes at most 32
# frames it does not show.
DEFAULT_CHUNK_FRAMES = 33

# `tokcodec encode`'s longest chunk: a chunk goes on past DEFAULT_CHUNK_FRAMES
# where its picture is steady, and is weighed again after 65 and 97 frames
# (`streaming.chunk_split`). 65 against 33: 7% to 10% fewer bits on steady
# clips (bench/RESULTS.md "Chunks that end early where the picture moves");
# 129 against 65: 3% to 16% fewer again, for 5% more memory since the coding
# holds a chunk's frames as uint8 only ("Long chunks in memory that does not
# grow with them"). A seek decodes up to 128 frames it does not show.
DEFAULT_LONGEST_CHUNK = 129

# `encode --headroom` choices: what becomes of a limited-range source's Y'
# above 235 or below 16 (`codec.luma_range`).
HEADROOM = ("auto", "keep", "clip")

# `encode --hysteresis` values that choose the threshold per chunk
# (`streaming.rate_control`): estimated from the latent, or by decoding.
AUTO_HYSTERESIS = ("auto", "auto-decode")
# What `tokcodec encode` uses: "auto" costs about what a fixed threshold
# does and needs 6-30% fewer bits for the same quality on the eval clips
# (bench/RESULTS.md, "The hysteresis chosen from the latent"). Frame-by-frame
# streaming cannot wait for a chunk's latent: it keeps the fixed
# `codec.lfq.DEFAULT_HYSTERESIS`.
DEFAULT_ENCODE_HYSTERESIS = "auto"

_LAZY = {
    "encode_file": "tokcodec.files",
    "decode_file": "tokcodec.files",
    "read_tokens": "tokcodec.files",
    "open_tok": "tokcodec.files",
    "tok_info": "tokcodec.files",
    "export_tokens": "tokcodec.token_archive",
    "pack_tokens": "tokcodec.token_archive",
    "TokenChunk": "tokcodec.files",
    "reconstruct_file": "tokcodec.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tokcodec' has no attribute {name!r}")
