"""The user guide (README.md, docs/*.md) is run by the tests, so a documented command cannot rot.

- every shell block's commands of ours are parsed by the real parsers (a flag that does not exist fails);
- every ``bash runnable`` block is executed, file by file, in a temporary folder (conventions in
  tests/docs/doc_blocks.py and docs/index.md);
- relative links resolve, every guide page is listed in docs/index.md, the README keeps its two
  set-up commands.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from doc_blocks import (
    ROOT,
    SHELL_LANGS,
    Block,
    check_command,
    doc_files,
    extract_blocks,
    loop_values,
    simple_commands,
)
from doc_runner import SMOKE_DOC, failure_message, run_block, seed_copy

DOCS = doc_files()
KNOWN_NEEDS = ("smoke", "foreign-onnx", "native")


def _blocks() -> list[Block]:
    return [b for p in DOCS for b in extract_blocks(p)]


def _shell_blocks() -> list[Block]:
    return [b for b in _blocks() if b.lang in SHELL_LANGS]


def test_guide_exists() -> None:
    names = {p.name for p in DOCS}
    for page in ("index.md", "getting-started.md", "datasets.md", "training.md", "evaluation.md", "export.md",
                 "jetson.md", "own-model.md", "native.md"):
        assert page in names, f"docs/{page} is missing"


def test_every_page_is_in_the_index() -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for p in DOCS:
        if p.parent.name == "docs" and p.name != "index.md":
            assert f"({p.name})" in index, f"docs/index.md does not link {p.name}"


def test_relative_links_resolve() -> None:
    bad = []
    for p in DOCS:
        text = re.sub(r"```.*?```", "", p.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://|^#|^mailto:", target):
                continue
            if not (p.parent / target.split("#")[0]).exists():
                bad.append(f"{p.relative_to(ROOT)} -> {target}")
    assert not bad, f"broken links: {bad}"


def test_readme_keeps_the_setup_commands() -> None:
    blocks = [b.text.strip() for b in extract_blocks(ROOT / "README.md") if b.lang == "bash"]
    assert "bash scripts/demo.sh" in blocks and "bash scripts/test.sh" in blocks


def test_runnable_blocks_are_well_formed() -> None:
    problems = []
    for b in _blocks():
        if b.runnable and b.lang != "bash":
            problems.append(f"{b.where}: runnable blocks must be bash, got {b.lang!r}")
        unknown = [n for n in b.needs if n not in KNOWN_NEEDS]
        if unknown:
            problems.append(f"{b.where}: unknown needs= {unknown}; known: {', '.join(KNOWN_NEEDS)}")
    assert not problems, problems
    assert sum(b.runnable for b in _blocks()) >= 10, "the guide should run its cheap commands"


@pytest.mark.parametrize("block", _shell_blocks(), ids=lambda b: b.where)
def test_documented_commands_parse(block: Block) -> None:
    """Each command of ours in a shell block, runnable or not, is accepted by its own parser."""
    checked = 0
    variables = loop_values(block.text)
    for argv in simple_commands(block.text):
        try:
            if check_command(argv, variables) is not None:
                checked += 1
        except (AssertionError, ValueError) as e:
            pytest.fail(f"{block.where}: `{shlex.join(argv)}` does not parse: {e}")
    if block.runnable and block.lang == "bash":
        return  # executed below
    ours = re.search(r"(?m)-m (train|export|calib|runtime)\b|^\s*irreid-edge|bench/\w+\.py", block.text)
    assert checked or not ours, f"{block.where}: a command of ours was not recognised"


@pytest.mark.parametrize("block", [b for b in _blocks() if b.lang == "yaml"], ids=lambda b: b.where)
def test_documented_yaml_configs_load(block: Block) -> None:
    """A YAML training config shown in the guide names only fields that exist, with valid values."""
    import yaml

    from train.config import config_from_dict, get_preset

    data = yaml.safe_load(block.text)
    try:
        config_from_dict(data, base=get_preset("sysu-paper")).validate()
    except ValueError as e:
        pytest.fail(f"{block.where}: {e}")


def test_parse_check_catches_a_wrong_flag() -> None:
    """The checker itself: a misspelt flag, a bad preset, an abbreviation and a bad native option fail."""
    for bad in ("python -m train.fit --preset sysu-paper --root X --variant fancy",
                "python -m train.fit --epoch 3",
                "python -m train.evaluate --checkpoint c.pt --mode outdoor",
                "irreid-edge build --model m --max-bat 4",
                "python -m export.onnx --int8 --calib-method kl",
                "irreid-edge-native match --probe x.jpg --topk 3"):
        with pytest.raises((AssertionError, ValueError)):
            check_command(shlex.split(bad))
    assert check_command(shlex.split("irreid-edge build --model m --max-batch 4")) is not None


# -- execution ---------------------------------------------------------------------------------------
def _runnable_docs() -> list[Path]:
    return [p for p in DOCS if p != SMOKE_DOC and any(b.runnable for b in extract_blocks(p))]


def test_getting_started_runs(smoke_workspace: tuple[Path, list]) -> None:
    work, runs = smoke_workspace
    assert runs, f"{SMOKE_DOC.name} has no runnable block"
    for run in runs:
        assert run.returncode == 0, failure_message(run)
    for produced in ("runs/smoke/best.pt", "runs/smoke/export/spec.json", "runs/smoke/export/report.md"):
        assert (work / produced).exists(), f"{SMOKE_DOC.name} should leave {produced} behind"


@pytest.mark.parametrize("doc", _runnable_docs(), ids=lambda p: p.name)
def test_runnable_blocks_run(doc: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    seeded: set[str] = set()
    for block in (b for b in extract_blocks(doc) if b.runnable):
        for need in block.needs:
            if need in seeded:
                continue
            if need == "smoke":
                work, runs = request.getfixturevalue("smoke_workspace")
                if not runs or any(r.returncode for r in runs):
                    pytest.fail(f"{block.where} needs the getting-started folder, whose blocks failed")
                seed_copy(work, tmp_path)
            elif need == "foreign-onnx":
                src = request.getfixturevalue("foreign_onnx")
                (tmp_path / "foreign.onnx").write_bytes(src.read_bytes())
            elif need == "native" and not os.environ.get("IRREID_NATIVE_EXE"):
                pytest.skip(f"{block.where} needs irreid-edge-native; set IRREID_NATIVE_EXE to a built one")
            seeded.add(need)
        run = run_block(block, tmp_path)
        assert run.returncode == 0, failure_message(run)
