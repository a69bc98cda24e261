"""Time train.evaluate.metrics on SYSU-MM01-sized problems (issue 6's bar: 10 trials < 2 s on a CPU).

SYSU all-search single-shot: 3,803 IR queries (cams 3, 6) x 301 colour gallery images (cams 1, 2, 4, 5;
one per id and camera, 96 ids). Each trial draws a new gallery and ranks with -q @ g.T, as the CLI does.

    python bench/eval_speed.py [--trials 10] [--queries 3803] [--gallery 301] [--dim 1536]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.evaluate.metrics import cosine_distmat, evaluate_ranking


def _one_run(args: argparse.Namespace, q_feat, q_pids, q_cams, galleries) -> tuple[float, float, list[float]]:
    """(metric seconds, distance + metric seconds, rank-1 per trial) over all trials."""
    metric_s, total_s, r1 = 0.0, 0.0, []
    for g_feat, g_pids, g_cams in galleries:
        t0 = time.perf_counter()
        dist = cosine_distmat(q_feat, g_feat)
        t1 = time.perf_counter()
        res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, "sysu")
        t2 = time.perf_counter()
        metric_s += t2 - t1
        total_s += t2 - t0
        r1.append(res.rank(1))
    return metric_s, total_s, r1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--queries", type=int, default=3803)
    p.add_argument("--gallery", type=int, default=301)
    p.add_argument("--ids", type=int, default=96)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--repeat", type=int, default=3, help="time all trials this many times; report the fastest")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    q_pids = rng.integers(0, args.ids, args.queries)
    q_cams = rng.choice([3, 6], args.queries)
    q_feat = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    q_feat /= np.linalg.norm(q_feat, axis=1, keepdims=True)
    galleries = []
    for _ in range(args.trials):  # drawn up front: only distances and metrics are timed
        g_feat = rng.normal(size=(args.gallery, args.dim)).astype(np.float32)
        g_feat /= np.linalg.norm(g_feat, axis=1, keepdims=True)
        galleries.append((g_feat, np.resize(np.arange(args.ids), args.gallery), rng.choice([1, 2, 4, 5], args.gallery)))
    runs = [_one_run(args, q_feat, q_pids, q_cams, galleries) for _ in range(max(1, args.repeat))]
    metric_s, total_s, r1 = min(runs, key=lambda r: r[1])
    print(f"{args.trials} trials of {args.queries} x {args.gallery} (sysu protocol), fastest of {len(runs)}: "
          f"metrics {metric_s:.3f} s, with distances {total_s:.3f} s "
          f"({1000 * total_s / args.trials:.1f} ms/trial); all runs {', '.join(f'{r[1]:.2f}' for r in runs)} s; "
          f"chance rank-1 {100 * np.mean(r1):.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
