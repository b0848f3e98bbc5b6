"""Experiment: how well cheaper rules pick the hysteresis threshold, from `hysteresis_proxy.py`'s rows.

Run: .venv/bin/python bench/experiments/hysteresis_policies.py [--fit TRAIN.jsonl] EVAL.jsonl...
Every rule climbs from 0.2 as `choose_hysteresis` does, scoring PSNR - 1 dB x log2(bits), and differs only
in where PSNR comes from: "decode" the whole chunk decoded (what `--hysteresis auto` does now), "decode17" its
first 17 frames, "latent" no decode at all (PSNR moves with -10 kappa log10 of the latent's squared distance
to its codes, kappa fitted on --fit's rows by least squares), "latent+1" one decode at 0.2 and the latent for
the other thresholds' change. Per rule: how often it picks the decoder's threshold, and the score (true PSNR
of the pick - log2 bits) it loses against that pick, mean and worst, in dB.
"""

import argparse
import json
import math
from collections import defaultdict

import numpy as np

DB_PER_DOUBLING = 1.0
START = 0.2


def load(paths: list[str]) -> dict[tuple, dict[float, dict]]:
    """Rows grouped per (clip, width, chunk, quality), keyed by threshold."""
    groups: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            groups[(r["clip"], r["width"], r["chunk"], r["quality"])][r["h"]] = r
    return groups


def psnr(mse: float) -> float:
    return 10 * math.log10(4 / mse)


def score(psnr_db: float, row: dict) -> float:
    return psnr_db - DB_PER_DOUBLING * math.log2(8 * row["bytes"])


def climb(rows: dict[float, dict], psnr_of) -> float:
    """The threshold a hill-climb from START picks when PSNR comes from psnr_of(h)."""
    hs = sorted(rows)
    i = hs.index(START)
    while True:
        best = max((j for j in (i - 1, i, i + 1) if 0 <= j < len(hs)), key=lambda j: score(psnr_of(hs[j]), rows[hs[j]]))
        if best == i:
            return hs[i]
        i = best


def log_ratio(rows: dict[float, dict], h: float) -> float:
    return -10 * math.log10(rows[h]["latent_sq"] / rows[START]["latent_sq"])


def per_latent(rows: dict[float, dict], h: float) -> float:
    return -(rows[h]["latent_sq"] - rows[START]["latent_sq"]) / rows[h]["latents"]


def fit(groups: dict[tuple, dict[float, dict]], feature) -> float:
    """c in PSNR(h) - PSNR(0.2) = c feature(rows, h), least squares through 0."""
    x, y = [], []
    for rows in groups.values():
        for h, r in rows.items():
            if h != START:
                x.append(feature(rows, h))
                y.append(psnr(r["mse"]) - psnr(rows[START]["mse"]))
    x, y = np.array(x), np.array(y)
    c = float(x @ y / (x @ x))
    print(f"{feature.__name__}: c {c:.3f}, residual rms {np.sqrt(np.mean((y - c * x) ** 2)):.3f} dB, "
          f"change rms {np.sqrt(np.mean(y ** 2)):.3f} dB")
    return c


def rules(kappa: float, slope: float) -> dict:
    def latent(rows, h):  # PSNR relative to the start's, which cancels in the comparison
        return kappa * log_ratio(rows, h)

    return {
        "decode": lambda rows, h: psnr(rows[h]["mse"]),
        "decode17": lambda rows, h: psnr(rows[h]["mse17"]),
        "latent": latent,
        "latent+1": lambda rows, h: psnr(rows[START]["mse"]) + latent(rows, h),
        "linear": lambda rows, h: slope * per_latent(rows, h),
        "fixed 0.2": None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("eval", nargs="+")
    ap.add_argument("--fit")
    args = ap.parse_args()
    train = load([args.fit or args.eval[0]])
    kappa, slope = fit(train, log_ratio), fit(train, per_latent)
    groups = load(args.eval)
    for name, psnr_of in rules(kappa, slope).items():
        agree, losses = 0, []
        for key, rows in sorted(groups.items()):
            truth = climb(rows, lambda h: psnr(rows[h]["mse"]))
            pick = START if psnr_of is None else climb(rows, lambda h: psnr_of(rows, h))
            agree += pick == truth
            true_score = lambda h: score(psnr(rows[h]["mse"]), rows[h])  # noqa: E731
            losses.append(true_score(truth) - true_score(pick))
        print(f"{name:10s} agrees {agree}/{len(groups)}, score lost mean {np.mean(losses):.3f} dB, "
              f"worst {max(losses):.3f} dB")


if __name__ == "__main__":
    main()
