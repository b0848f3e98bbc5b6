"""Compiled inner loops of entropy model 2 (see `entropy`'s module docstring).

Model 2 has the contexts, counts and probabilities of model 1; what differs
is how many calls the coder sees: three bit planes of a token form one
8-ary symbol, whose probabilities are the products of the three planes'
binary probabilities. The per-decision work (contexts, joint probabilities,
count updates) runs here, compiled by numba, because in numpy it costs as
much as the coder itself. Every function uses integer arithmetic, except
the joint probabilities, which are products of three dyadic numbers of at
most 16 bits each and so exact in float64: the same on every machine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GROUP = 3  # bit planes per coded symbol
SYMBOLS = 1 << GROUP

INTRA, INTER_BASE, INTER = 0, 1, 2  # kinds of step (frame 0; later frames' base lattice; the rest)


@njit(cache=True, nogil=True)
def probabilities(counts, group_sum, K, C, B, m, p1):
    """Integer probability of a 1 (in units of 2**-B) of every context, into p1.

    p1 = ((c1 << B) + m * q) // (c0 + c1 + m), q = (S1 << B) // (S0 + S1) the
    shared estimate of the context's group, at least 1 (as model 1's refresh).
    """
    for c in range(C):
        q = 0
        if m:
            s0 = group_sum[0, c]
            s1 = group_sum[1, c]
            q = ((s1 << B) // (s0 + s1)) * m
        for k in range(K):
            i = k * C + c
            c0 = counts[0, i]
            c1 = counts[1, i]
            p = ((c1 << B) + q) // (c0 + c1 + m)
            p1[i] = p if p > 0 else 1


@njit(cache=True, nogil=True)
def step_probabilities(kind, has_r, pos, nb, prev, prev2, cur, changed, Wp, K, C, p1, B, lut_f, idx, joint):
    """Contexts of a step's decisions (into idx, (n * K,)) and the joint
    probabilities of its symbols (into joint, (n * G, 8)).

    pos: the step's positions (flat indices into the padded grid), nb: their
    4 decoded neighbours (n, 4) (0 rows for base steps), prev / prev2 / cur:
    signs (+-1, 0 outside) of frames t-1, t-2, t, shaped (Hp * Wp, K),
    changed: bits changed per token in frame t.
    """
    n = pos.size
    G = (K + GROUP - 1) // GROUP
    one = 1 << B
    scale = 1.0 / one
    q = np.empty(GROUP * G, np.int64)
    for j in range(n):
        p = pos[j]
        fv = 0
        if kind == INTER:
            s = 0
            for i in range(4):
                s += changed[nb[j, i]]
            fv = lut_f[s]
        for k in range(K):
            if kind == INTRA:
                s = 0
                if nb.shape[0]:
                    for i in range(4):
                        s += cur[nb[j, i], k]
                ctx = s + 4
            else:
                P = prev[p, k]
                a = (prev[p - 1, k] + prev[p + 1, k] + prev[p - Wp, k] + prev[p + Wp, k]) * P
                a = (a + 4) >> 1
                r = 1 if has_r and prev2[p, k] != P else 0
                if kind == INTER_BASE:
                    ctx = a + 5 * r
                else:
                    s = 0
                    for i in range(4):
                        s += cur[nb[j, i], k]
                    ctx = a + 5 * ((s * P + 4) >> 1) + fv + 75 * r
            ctx += C * k
            idx[j * K + k] = ctx
            q[k] = p1[ctx]
        for k in range(K, GROUP * G):
            q[k] = 0  # planes beyond K: a 0 bit, surely
        for g in range(G):
            a0 = q[GROUP * g]
            a1 = q[GROUP * g + 1]
            a2 = q[GROUP * g + 2]
            row = j * G + g
            for v in range(SYMBOLS):
                f0 = a0 if v & 1 else one - a0
                f1 = a1 if v & 2 else one - a1
                f2 = a2 if v & 4 else one - a2
                joint[row, v] = (f0 * scale) * (f1 * scale) * (f2 * scale)


@njit(cache=True, nogil=True)
def symbols_of(kind, pos, prev, cur, K, x, sym):
    """Encoder: the decisions of a step (into x, (n * K,)) and its symbols (into sym)."""
    G = (K + GROUP - 1) // GROUP
    for j in range(pos.size):
        p = pos[j]
        for g in range(G):
            sym[j * G + g] = 0
        for k in range(K):
            if kind == INTRA:
                b = 1 if cur[p, k] > 0 else 0
            else:
                b = 1 if cur[p, k] != prev[p, k] else 0
            x[j * K + k] = b
            sym[j * G + k // GROUP] |= b << (k % GROUP)


@njit(cache=True, nogil=True)
def apply_symbols(kind, pos, sym, prev, cur, changed, K, x):
    """Decoder: the decisions in the decoded symbols (into x), and the signs
    and per-token change counts they give at the step's positions."""
    G = (K + GROUP - 1) // GROUP
    for j in range(pos.size):
        p = pos[j]
        nchanged = 0
        for k in range(K):
            b = (sym[j * G + k // GROUP] >> (k % GROUP)) & 1
            x[j * K + k] = b
            if kind == INTRA:
                cur[p, k] = 1 if b else -1
            else:
                cur[p, k] = -prev[p, k] if b else prev[p, k]
                nchanged += b
        if kind != INTRA:
            changed[p] = nchanged


@njit(cache=True, nogil=True)
def update_counts(counts, idx, x, KC, lim, bound, npos):
    """Add a step's decisions to the counts (2 half units each); halve the
    contexts whose total exceeds lim (rounding up) until none does. Returns the
    new upper bound on any context's total (as model 1's _Table.update)."""
    flat = counts.reshape(-1)
    for i in range(idx.size):
        flat[x[i] * KC + idx[i]] += 2
    bound += 2 * npos
    if bound > lim:
        top = 0
        for i in range(KC):
            c0 = counts[0, i]
            c1 = counts[1, i]
            while c0 + c1 > lim:
                c0 = (c0 + 1) >> 1
                c1 = (c1 + 1) >> 1
            counts[0, i] = c0
            counts[1, i] = c1
            if c0 + c1 > top:
                top = c0 + c1
        bound = top
    return bound


@njit(cache=True, nogil=True)
def plane_sums(counts, K, C, out):
    """out[d, c]: counts of decision d in context c summed over the K planes."""
    for c in range(C):
        s0 = 0
        s1 = 0
        for k in range(K):
            s0 += counts[0, k * C + c]
            s1 += counts[1, k * C + c]
        out[0, c] = s0
        out[1, c] = s1
