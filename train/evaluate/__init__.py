"""Evaluation: the community's exact SYSU-MM01 / RegDB / Market-1501 metrics, re-ranking, feature
extraction from checkpoints or exported models, the ``python -m train.evaluate`` CLI and the paper's
figures as pictures (``python -m train.evaluate.figures``).

Import the submodules directly; this package imports nothing heavy (metrics need numpy only).
"""
