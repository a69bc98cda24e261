"""`irreid-edge match --rerank` and `python -m train.evaluate --rerank` rank alike (issue 19 item 6).

One exported model folder, one Market-layout folder of crops: match (the real CLI, in a subprocess)
ranks the query crops against bounding_box_test/, train.evaluate's trial evaluation ranks the same
queries against the same gallery; both re-rank through runtime.search.rerank and must give the same order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from cli_fixtures import cli_json, make_model_dir, save_crop


def test_match_and_evaluate_rerank_give_the_same_ranking(tmp_path: Path) -> None:
    from train.evaluate.features import FeatureCache, OnnxEmbedder
    from train.evaluate.protocols import evaluate_trial, iter_trials

    model = make_model_dir(tmp_path / "model")
    root = tmp_path / "Market-1501"
    queries = [save_crop(root / "query" / f"{pid:04d}_c1s1_{pid:06d}_00.jpg", seed=pid) for pid in range(1, 6)]
    for i in range(14):  # 7 ids x cameras 2 and 3; ids 1..5 also have queries
        save_crop(root / "bounding_box_test" / f"{1 + i // 2:04d}_c{2 + i % 2}s1_{100 + i:06d}_01.jpg", seed=100 + i)

    out = cli_json("match", "--probe", *map(str, queries), "--gallery", str(root / "bounding_box_test"),
                   "--model", str(model), "--probe-modality", "rgb", "--gallery-modality", "rgb", "--rerank",
                   "--top-k", "14", "--index", str(tmp_path / "gallery.idx"))
    by_match = {Path(p["probe"]).name: [r["path"] for r in p["results"]] for p in out["probes"]}

    [trial] = list(iter_trials("market-query", root, market_ir_cams=()))
    [res] = evaluate_trial(FeatureCache(OnnxEmbedder.open(model)), trial, ["rerank"])
    names = [Path(r.path).name for r in trial.gallery]
    by_evaluate = {Path(q.path).name: [names[j] for j in np.argsort(res.distmat[i], kind="stable")]
                   for i, q in enumerate(trial.queries)}
    assert len(by_match) == len(by_evaluate) == 5 and all(len(v) == 14 for v in by_match.values())
    assert by_match == by_evaluate
