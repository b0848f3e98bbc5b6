"""Experiment: peak memory and time of coding one long chunk in segments.

Run: .venv/bin/python bench/experiments/segment_memory.py FRAMES SEGMENT HEIGHT WIDTH
(one process per measurement: the peak RSS is the process's). Encodes FRAMES random frames
as one chunk with `streaming.stateful.encode_chunk(segment_frames=SEGMENT)` (the default model,
level 2, one torch thread), decodes them with `decode_chunk`, and prints the times and the peak
RSS. Result in bench/RESULTS.md ("Chunk length")."""

import resource
import sys
import time

import numpy as np
import torch

from tokcodec.codec import load_tokenizer
from tokcodec.codec.clips import frames_to_video
from tokcodec.streaming.stateful import decode_chunk, encode_chunk

n, segment, height, width = map(int, sys.argv[1:5])
torch.set_num_threads(1)
tokenizer = load_tokenizer(None).eval()
frames = np.random.default_rng(0).integers(0, 255, (n, height, width, 3), dtype=np.uint8)
start = time.time()
with torch.no_grad():
    tokens = encode_chunk(tokenizer, frames_to_video(frames), 18, 0.2, segment_frames=segment)
    encoded = time.time()
    decode_chunk(tokenizer, tokens, (n, height, width), 18, segment_frames=segment)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(f"{width}x{height}, {n} frames in segments of {segment}: encode {encoded - start:.1f} s, "
      f"decode {time.time() - encoded:.1f} s, peak RSS {peak:.2f} GB")
