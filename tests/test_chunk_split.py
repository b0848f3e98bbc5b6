"""The encoder's choice to end a long chunk early (`streaming.chunk_split`)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_a_chunk_that_goes_on_is_weighed_again_on_the_latent_frames_since_the_last_point() -> None:
    split = ChunkSplit()
    assert list(split.points(129)) == [33, 65, 97] and list(split.points(65)) == [33] and not split.points(33)
    costs_per_frame = [300] + [100] * 8 + [250] * 8  # steady for 33 frames, then moving

    def size(tokens: np.ndarray) -> int:
        return sum(costs_per_frame[: len(tokens)])

    tokens = np.zeros((17, 4, 4), np.int64)  # the tokens of 65 frames
    assert not split.ends(tokens[:9], size, window=8)  # at 33: steady
    assert split.ends(tokens, size, window=8)  # at 65: the window since 33 moves (300 < 1.35 * 250)
    assert not split.ends(tokens, size)  # against all after the first it would not (175 a frame)


def test_a_split_needs_more_than_one_frame() -> None:
    with pytest.raises(ValueError, match="--chunk-split must be 0"):
        ChunkSplit(1)
