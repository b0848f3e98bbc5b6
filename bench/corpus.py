"""Where the real-video corpus is, and which clips are for evaluation.

The corpus is fetched by ../shared/corpus/fetch.sh into $TOKCODEC_CORPUS
(default ~/.cache/tokcodec/corpus); MANIFEST.tsv beside fetch.sh lists each
clip's split.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO.parent / "shared" / "corpus" / "MANIFEST.tsv"


def corpus_dir() -> Path:
    return Path(os.environ.get("TOKCODEC_CORPUS", Path.home() / ".cache" / "tokcodec" / "corpus"))


def clips(split: str) -> list[Path]:
    """Paths of the corpus clips of a split ('train' or 'eval') that are present."""
    if not MANIFEST.is_file():
        return []
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines()[1:] if line.strip()]
    return [corpus_dir() / r[0] for r in rows if r[2] == split and (corpus_dir() / r[0]).is_file()]
