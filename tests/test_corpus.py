"""Every corpus video round-trips through encode, info, tokens, pack and decode.

The first 41 frames of each (one chunk, or 33 frames and 8 where the picture
moves: the split is weighed), coded at the
default point of the rate ladder as users get it (2x, or 1.5x for the 720p
videos: about 22 minutes for all of them on 2 cores, 2026-12-06, most of it
refining the sources of 480p and more); geometry, frame
rate, rotation and audio are what differ between the files.
TOKCODEC_CORPUS_FRAMES=0 runs the whole videos (hours on a CPU).

Marked `corpus` (and slow): run with `make test-all` after
../shared/corpus/fetch.sh; skips when the corpus is absent.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from corpus import clips  # noqa: E402

import tokcodec  # noqa: E402
from tokcodec.cli import main  # noqa: E402
from tokcodec.codec.io import iter_frames, probe  # noqa: E402

VIDEOS = clips("train") + clips("eval")

FRAMES = int(os.environ.get("TOKCODEC_CORPUS_FRAMES", "41")) or None  # None: whole videos
pytestmark = [pytest.mark.corpus, pytest.mark.slow]


@pytest.mark.skipif(not VIDEOS, reason="corpus not fetched (../shared/corpus/fetch.sh)")
@pytest.mark.parametrize("video", VIDEOS, ids=[v.name for v in VIDEOS])
def test_corpus_video_round_trips(video: Path, tmp_path: Path) -> None:
    tok, npz, packed, mp4 = (tmp_path / n for n in ("a.tok", "a.npz", "b.tok", "a.mp4"))
    run = CliRunner()
    limit = [] if FRAMES is None else ["--frames", str(FRAMES)]
    for args in (["encode", str(video), "-o", str(tok), "-q", *limit], ["tokens", str(tok), "-o", str(npz)],
                 ["pack", str(npz), "-o", str(packed)], ["decode", str(tok), "-o", str(mp4), "-q"]):
        r = run.invoke(main, args)
        assert r.exit_code == 0, (args[0], r.stderr)
    info = json.loads(run.invoke(main, ["info", str(tok), "--json"]).output)
    src, out = probe(video), probe(mp4)
    assert (info["width"], info["height"]) == (src.width, src.height) == (out.width, out.height)
    # The frames the source really decodes to (its first FRAMES): container metadata can be off
    # (motion.mov lists 243 frames and decodes 242) or absent (WebM).
    expected = sum(1 for _ in itertools.islice(iter_frames(video), FRAMES))
    assert out.frames == info["frames"] == expected and out.fps == src.fps
    assert out.has_audio == src.has_audio
    a, b = list(tokcodec.read_tokens(tok)), list(tokcodec.read_tokens(packed))
    assert len(a) == len(b) and all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b))
