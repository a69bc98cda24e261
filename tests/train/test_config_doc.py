"""docs/training.md lists every config field with its default and meaning, generated from the
dataclasses; regenerating must give the guide's text (issue 19 item 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from train.config import SECTIONS, TrainConfig
from train.config_doc import BEGIN, END, fields_markdown

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_the_guide_lists_every_field_as_generated() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{GUIDE} lost its generated config-field block"
    block = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END
    assert block == fields_markdown(), ("docs/training.md's config fields drifted from train/config.py: "
                                        "run python -m train.config_doc --write docs/training.md")


def test_every_field_has_a_meaning_and_the_hidden_ones_are_listed() -> None:
    cfg = TrainConfig()
    for obj, prefix in [(cfg, ""), *((getattr(cfg, s), f"{s}.") for s in SECTIONS)]:
        for f in dataclasses.fields(obj):
            if f.name not in SECTIONS:
                assert len(f.metadata.get("help", "")) > 10, f"{prefix}{f.name} has no meaning written"
    text = fields_markdown()
    for name in ("model.stripes", "model.share_from", "data.channel_aug", "loss.label_smoothing",
                 "optim.optimizer", "dat_resnet34", "loss.extra_terms", "plugins"):
        assert name in text
