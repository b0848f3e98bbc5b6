"""Experiment: bits of the 6-bit tokens under entropy model 3 with the shipped context net and with another.

Run: .venv/bin/python bench/experiments/compare_nets.py CANDIDATE_PRIOR.npz TOKENS.npz...
TOKENS.npz: from `tokcodec tokens FILE.tok -o TOKENS.npz` of files `encode` wrote (any level; the low 6 bits
are coded). Both sides use the shipped 6-bit prior's counts, so each chunk keeps the shorter of the net's
and the counts' coding, as `encode` does. Result in bench/RESULTS.md ("The context net trained on the
tokens encode writes")."""

import sys

import numpy as np

from tokcodec.bitstream.entropy import EntropyParams, EntropyPrior, encode_tokens
from tokcodec.priors import load_prior

shipped = load_prior("magvit2-4x8x8-k30", 6)
other = EntropyPrior(6, shipped.tables, EntropyPrior.load(sys.argv[1]).net)
for path in sys.argv[2:]:
    n, bits_shipped, bits_other = 0, 0, 0
    for chunk in np.load(path)["tokens"]:
        chunk = chunk.astype(np.int64) & 63
        bits_shipped, bits_other = (
            total + 8 * len(encode_tokens(chunk, 6, EntropyParams.for_encoding(prior, chunk.shape[1] * chunk.shape[2]),
                                          prior))
            for total, prior in ((bits_shipped, shipped), (bits_other, other)))
        n += chunk.size
    print(f"{path}: shipped net {bits_shipped / n:.3f}, other net {bits_other / n:.3f} bits/token "
          f"({100 * (bits_other / bits_shipped - 1):+.1f}%), {n} tokens", flush=True)
