"""Experiment (not part of the codec): cross-plane contexts on top of the context model.

Run: .venv/bin/python bench/experiments/cross_plane_contexts.py (needs bench/entropy.py's token cache of
the default model). Encoder-side sizes only; see bench/RESULTS.md for the result (rejected)."""
import glob, numpy as np, constriction
from tokcodec.bitstream import entropy as E
from tokcodec.bitstream.entropy import _Table, _Group, _plan, _levels, _token_signs, _C_INTRA, _C_INTER_BASE, _C_INTER, _MINBAND, _GROW, _BERNOULLI

def walk(K, H, W, T, params, code, frames_in, prior=None, partners=None, collect=None):
    li, lp = _levels(H, W)
    pad = 1 << (max(li, lp) - 1)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    inner = (slice(pad, pad + H), slice(pad, pad + W))
    bufs = [np.zeros((Hp, Wp, K), np.int8) for _ in range(3)]
    changed = np.zeros(Hp * Wp, np.int16)
    plane = np.arange(K, dtype=np.intp)
    lut_c = np.zeros(9, np.intp)
    for v in range(-4, 5): lut_c[v] = 5 * ((v + 4) >> 1)
    ns = np.arange(4 * K + 1)
    lut_f = 25 * ((ns > 0).astype(np.intp) + (4 * ns > K))
    warm = params.warmup * K
    tables, groups = {}, {}
    if partners is not None:
        KB, P = partners.shape; KA = K - KB
    def table(key, C, Kt):
        tab = tables.get(key)
        if tab is None:
            gk = (key[0], key[1] == "base", key[-1] == "B")
            group = groups.setdefault(gk, _Group(C))
            init = None if prior is None else prior.get(key)
            tab = tables[key] = _Table(Kt, C, params, group, init)
            if init is not None: tab.coded = 32 * Kt
        return tab
    for t in range(T):
        prev, cur = bufs[(t + 2) % 3], bufs[t % 3]
        prevf, curf = prev.reshape(-1, K), cur.reshape(-1, K)
        phases, order, order_in = _plan(H, W, lp if t else li, pad)
        cur[inner] = _token_signs(frames_in[t], K)
        S = curf[order]
        Vals = (S > 0).astype(np.intp)
        if t:
            npv = (prev[pad - 1:pad - 1 + H, pad:pad + W] + prev[pad + 1:pad + 1 + H, pad:pad + W]
                   + prev[pad:pad + H, pad - 1:pad - 1 + W] + prev[pad:pad + H, pad + 1:pad + 1 + W])
            npv *= prev[inner]; npv += 4; npv >>= 1
            a2 = npv.reshape(-1, K)[order_in]
            P_ = prevf[order]
            r = (bufs[(t + 1) % 3].reshape(-1, K)[order] != P_).astype(np.intp) if t > 1 else np.zeros(P_.shape, np.intp)
            a2 = a2 + 5 * r
            Xi = (S != P_).astype(np.int32)
            changed.reshape(Hp, Wp)[inner] = (cur[inner] != prev[inner]).sum(axis=2, dtype=np.int16)
        else:
            Xi = (S > 0).astype(np.int32)
        for key, p0, p1, nb in phases:
            if t:
                C = _C_INTER_BASE if nb is None else _C_INTER
                kk = ("inter",) + key
            else:
                C = _C_INTRA; kk = ("intra",) + key
            s0 = p0
            while s0 < p1:
                tabA = table(kk, C, K if partners is None else KA)
                if tabA.coded < warm * (1 if partners is None else KA / K):
                    s1 = min(p1, s0 + max(_MINBAND, _GROW * (tabA.coded // tabA.K)))
                else:
                    s1 = p1
                n = s1 - s0
                if nb is not None:
                    nbb = nb[:, s0 - p0:s1 - p0]
                    cs = np.add.reduce(curf[nbb], axis=0, dtype=np.int8)
                if t == 0:
                    ctx = (cs.astype(np.intp) + 4) if nb is not None else np.full((n, K), 4, np.intp)
                else:
                    Pv = P_[s0:s1]
                    if nb is not None:
                        cs *= Pv
                        ctx = lut_c.take(cs) + a2[s0:s1] + 70 * r[s0:s1]  # a + 5 c + 75 r, as the codec
                        ctx += lut_f.take(np.add.reduce(changed[nbb], axis=0))[:, None]
                    else:
                        ctx = a2[s0:s1].copy()
                x = Xi[s0:s1]
                if partners is None:
                    idx = (ctx + C * plane).reshape(-1)
                    tabA.refresh(); code(tabA.prob.take(idx), x.reshape(-1)); tabA.update(idx, x.reshape(-1), n)
                else:
                    idxA = (ctx[:, :KA] + C * plane[:KA]).reshape(-1)
                    xa = np.ascontiguousarray(x[:, :KA]).reshape(-1)
                    tabA.refresh(); code(tabA.prob.take(idxA), xa)
                    v = Vals[s0:s1]
                    pb = np.zeros((n, KB), np.intp)
                    for p in range(P):
                        pb |= v[:, partners[:, p]] << p
                    C2 = C << P
                    tabB = table(kk + ("B",), C2, KB)
                    idxB = (ctx[:, KA:] + C * pb + C2 * np.arange(KB)).reshape(-1)
                    xb = np.ascontiguousarray(x[:, KA:]).reshape(-1)
                    tabB.refresh(); code(tabB.prob.take(idxB), xb)
                    tabA.update(idxA, xa, n); tabB.update(idxB, xb, n)
                s0 = s1
    return tables

def size(grids, K, prior=None, partners=None, params=E.EntropyParams()):
    tot = 0
    for g in grids:
        T, H, W = g.shape
        enc = constriction.stream.queue.RangeEncoder()
        def code(p, x): enc.encode(x.astype(np.int32), _BERNOULLI, p); return x
        walk(K, H, W, T, params, code, g.astype(np.int64), prior, partners)
        tot += 4 * enc.get_compressed().size
    return 8 * tot / sum(g.size for g in grids)

def fit(grids, K, partners, weight=128):
    params = E.EntropyParams(count_limit=1 << 20, backoff=0)
    sums = {}
    for g in grids:
        T, H, W = g.shape
        tabs = walk(K, H, W, T, params, lambda p, x: x, g.astype(np.int64), None, partners)
        for k, tab in tabs.items(): sums[k] = sums.get(k, 0) + (tab.counts - 1)
    out = {}
    for k, c in sums.items():
        n = c.sum(0); sc = np.minimum(1.0, (weight - 2) / np.maximum(n, 1))
        out[k] = (1 + np.floor(c * sc)).astype(np.int64)
    return out

def choose_partners(grids, K, KB, P):
    flat = np.concatenate([g.reshape(-1) for g in grids]); b = (flat[:, None] >> np.arange(K)) & 1
    KA = K - KB
    def condH(target, ctx):
        idx = np.zeros(len(b), int)
        for c in ctx: idx = idx * 2 + b[:, c]
        n1 = np.bincount(idx, weights=b[:, target], minlength=1 << len(ctx)); n = np.bincount(idx, minlength=1 << len(ctx))
        p = (n1 + 0.5) / (n + 1); pp = p[idx]; x = b[:, target]
        return -np.mean(x * np.log2(pp) + (1 - x) * np.log2(1 - pp))
    out = []
    for t in range(KA, K):
        ctx = []
        for _ in range(P):
            ctx.append(min((c for c in range(KA) if c not in ctx), key=lambda c: condH(t, ctx + [c])))
        out.append(ctx)
    return np.array(out)

def grids_of(f):
    with np.load(f) as z: return [z[k] for k in sorted(z.files)]
from tokcodec.codec import fingerprint, load_tokenizer
FP = fingerprint(load_tokenizer())
K = 18
ev = {n: [g & ((1 << K) - 1) for g in grids_of(glob.glob(f'/root/.cache/tokcodec/bench-tokens/{n}*{FP}*.npz')[0])] for n in ['carphone', 'realshort']}
# sanity: my walk without partners reproduces the shipped coder's size
print('shipped context', E.encode_tokens and np.mean([8*sum(len(E.encode_tokens(g, K)) for g in ev['carphone'])/sum(g.size for g in ev['carphone'])]), 'walk', size(ev['carphone'], K))
for fit_on, test_on in [('realshort', 'carphone'), ('carphone', 'realshort')]:
    base_prior = fit(ev[fit_on], K, None)
    row = [size(ev[test_on], K), size(ev[test_on], K, base_prior)]
    for P in (1, 2, 3):
        part = choose_partners(ev[fit_on], K, K // 2, P)
        pr = fit(ev[fit_on], K, part)
        row += [size(ev[test_on], K, None, part), size(ev[test_on], K, pr, part)]
    print(f'test {test_on} (fit {fit_on}): ctx {row[0]:.3f} ctx+prior {row[1]:.3f} | ' + ' '.join(f'P{p}: {row[2*p]:.3f}/{row[2*p+1]:.3f}' for p in (1, 2, 3)), flush=True)
