"""The encoder's choice to end a long chunk early (`streaming.chunk_split`)."""

from __future__ import annotations

import numpy as np

from tokcodec.streaming.chunk_split import DEFAULT_SPLIT_RATIO, ChunkSplit


def costs(first: int, later: int):
    """A payload size of a token grid whose first latent frame costs `first` bytes and each later one `later`."""
    return lambda tokens: first + later * (len(tokens) - 1)


def test_a_chunk_ends_where_its_first_latent_frame_costs_little_more_than_a_later_one() -> None:
    tokens = np.zeros((9, 4, 4), np.int64)
    split = ChunkSplit()
    assert split.frames == 33 and split.ratio == DEFAULT_SPLIT_RATIO
    assert split.ends(tokens, costs(110, 100))  # moving: a later latent frame costs nearly an intra frame
    assert not split.ends(tokens, costs(300, 100))  # steady: the intra frame costs 3 later ones
    assert ChunkSplit(ratio=4).ends(tokens, costs(300, 100))
    assert not split.ends(tokens[:1], costs(100, 100))  # nothing after the first: no ratio
