"""Reading the user guide's command blocks: extraction, shell splitting, and argument checks.

Conventions (also written down in docs/index.md, "How the commands in this guide are tested"):

- A fenced block whose info string is ``bash runnable`` is executed by tests/docs/test_docs.py, in
  order with the other runnable blocks of the same file, in one temporary folder per file, with
  ``IRREID_RUNS=./runs`` and ``IRREID_CACHE=./.cache`` set there.
- ``needs=smoke`` on a runnable block: the folder starts as a copy of what the runnable blocks of
  docs/getting-started.md leave behind (a tiny dataset in ``data/``, a trained run ``runs/smoke/``
  and its export ``runs/smoke/export/``). ``needs=foreign-onnx``: ``./foreign.onnx`` is a small
  re-ID-style ONNX without irreid-edge metadata (input ``input``, ImageNet-normalised, output not
  L2-normalised), standing in for a torchreid / fast-reid / boxmot export. ``needs=native``: the
  block runs only where ``irreid-edge-native`` was built (``$IRREID_NATIVE_EXE``), else it is skipped.
- Every ``bash``/``sh`` block, runnable or not, has each command of ours (``python -m train.*``,
  ``python -m export.onnx``, ``torchrun ... -m train.fit``, ``python bench/*.py``, ``irreid-edge``,
  ``irreid-edge-native``) parsed with that command's own parser, so a flag that does not exist fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = ("bash", "sh", "shell", "console")
_FENCE = re.compile(r"^(`{3,})\s*([^`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    words: tuple[str, ...]  # info-string words after the language, e.g. ("runnable", "needs=smoke")
    text: str

    @property
    def runnable(self) -> bool:
        return "runnable" in self.words

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(n for w in self.words if w.startswith("needs=") for n in w[6:].split(",") if n)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def extract_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file (backtick fences; nested shorter fences stay inside)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2).split()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        lang = info[0] if info else ""
        blocks.append(Block(path, start, lang, tuple(info[1:]), "\n".join(body) + "\n"))
        i += 1
    return blocks


# -- splitting a block into simple commands ---------------------------------------------------------
_REDIRECT = re.compile(r"\d*>&\d+|\d*>>?\s*\S+|<\s*\S+")
_SEPARATORS = {"&&", "||", "|", ";", "&", "(", ")"}
_PREFIXES = ("time", "exec", "sudo", "nohup", "do", "then", "else", "!")
_SHELL_VAR = re.compile(r"\$\{?\w+\}?")


def logical_lines(text: str) -> Iterator[str]:
    """Lines with backslash continuations joined; heredoc bodies and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    heredoc_end: str | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if heredoc_end is not None:
            if line == heredoc_end:
                heredoc_end = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            heredoc_end = m.group(1)
            line = line[: m.start()]
        if line and not line.startswith("#"):
            yield line


def _newlines_to_separators(text: str) -> str:
    """Newlines outside quotes end a command; inside quotes (`python -c "..."` over lines) they stay."""
    out, quote, escaped = [], "", False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        elif not quote and ch == "\n":
            ch = " ; "
        out.append(ch)
    return "".join(out)


def simple_commands(text: str) -> Iterator[list[str]]:
    """Each simple command of a shell block as argv (env assignments, `time`, redirections removed)."""
    script = _newlines_to_separators("\n".join(logical_lines(text)))
    lex = shlex.shlex(_REDIRECT.sub(" ", script), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    current: list[str] = []
    for tok in [*lex, ";"]:
        if tok in _SEPARATORS:
            while current and (re.match(r"^[A-Za-z_]\w*=", current[0]) or current[0] in _PREFIXES):
                current.pop(0)
            if current and current[0] == "nice":  # `nice -n 10 python ...` (benchmark commands)
                current.pop(0)
                if current and current[0] == "-n":
                    del current[:2]
                elif current and re.match(r"^-\d+$", current[0]):
                    current.pop(0)
            if current:
                yield current
            current = []
        else:
            current.append(tok)


# -- which of our commands a simple command is ---------------------------------------------------------
@dataclass
class OurCommand:
    kind: str  # "module" | "script" | "irreid-edge" | "native"
    target: str  # module name, script path, or native subcommand
    args: list[str] = field(default_factory=list)


def _python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    if "-m" not in argv:
        return None
    i = argv.index("-m")
    if i + 1 >= len(argv):
        return None
    return argv[i + 1], argv[i + 2:]


def classify(argv: list[str]) -> OurCommand | None:
    exe = Path(argv[0]).name
    if exe in ("python", "python3") or exe.startswith("python3.") or exe == "torchrun":
        mod = _python_module(argv)
        if mod and mod[0].split(".")[0] in ("train", "export", "calib", "runtime"):
            return OurCommand("module", mod[0], mod[1])
        if exe != "torchrun" and len(argv) > 1 and argv[1].startswith("bench/") and argv[1].endswith(".py"):
            return OurCommand("script", argv[1], argv[2:])
        return None
    if exe == "irreid-edge":
        return OurCommand("irreid-edge", "", argv[1:])
    if exe == "irreid-edge-native":
        return OurCommand("native", argv[1] if len(argv) > 1 else "", argv[2:])
    return None


# -- parsers -------------------------------------------------------------------------------------------
def _no_abbrev(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A documented flag must be spelled out: argparse would otherwise accept any unique prefix."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _no_abbrev(sub)
    return parser


def parser_for(cmd: OurCommand) -> argparse.ArgumentParser:
    if cmd.kind == "irreid-edge":
        from runtime.cli import build_parser

        return _no_abbrev(build_parser())
    if cmd.kind == "module":
        mod = importlib.import_module(cmd.target)
        if not hasattr(mod, "get_args_parser") and importlib.util.find_spec(f"{cmd.target}.__main__"):
            mod = importlib.import_module(f"{cmd.target}.__main__")  # a package run with -m: its __main__
    else:
        spec = importlib.util.spec_from_file_location(f"_doc_{Path(cmd.target).stem}", ROOT / cmd.target)
        if spec is None or spec.loader is None:
            raise AssertionError(f"{cmd.target}: no such script")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    if not hasattr(mod, "get_args_parser"):
        raise AssertionError(f"{cmd.target} has no get_args_parser(); document a command that has one")
    return _no_abbrev(mod.get_args_parser())


def _script_without_parser(cmd: OurCommand) -> bool:
    """A bench script that reads sys.argv itself: only its existence can be checked."""
    if cmd.kind != "script":
        return False
    path = ROOT / cmd.target
    if not path.is_file():
        raise AssertionError(f"{cmd.target}: no such script")
    return "def get_args_parser" not in path.read_text(encoding="utf-8")


def parse_or_explain(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    """Parse like the real command; an error becomes an AssertionError carrying argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(args)
    except SystemExit as e:
        if e.code in (0, None):  # --help / --version
            return argparse.Namespace(_help=True)
        raise AssertionError(err.getvalue().strip().splitlines()[-1] if err.getvalue() else f"exit {e.code}") from None


def validate_values(cmd: OurCommand, ns: argparse.Namespace) -> None:
    """What argparse leaves to the command itself: presets, variants, --set fields, export options."""
    if getattr(ns, "_help", False):
        return
    if cmd.target == "train.fit" and not ns.resume and not ns.config:
        from train.fit import resolve_config

        resolve_config(ns)  # ConfigError names the bad preset / variant / field
    if cmd.target == "export.onnx":
        from export import onnx as export_onnx

        problem = export_onnx._validate(ns)
        if problem:
            raise AssertionError(problem)


def native_options() -> dict[str, set[str]]:
    """irreid-edge-native subcommand -> its options, read from the option tables in runtime/cpp/tools."""
    table: dict[str, set[str]] = {}
    for src in sorted((ROOT / "runtime" / "cpp" / "tools").glob("cmd_*.cpp")):
        text = src.read_text(encoding="utf-8")
        for m in re.finditer(r'Args args\("([\w-]+)",\s*\{(.*?)\},\s*argv\)', text, re.S):
            table[m.group(1)] = set(re.findall(r'\{"(--[\w-]+)",', m.group(2))) | {"--help", "-h"}
    return table


def check_native(cmd: OurCommand) -> None:
    if cmd.target in ("--help", "-h", "--version"):
        return
    options = native_options()
    if cmd.target not in options:
        raise AssertionError(f"irreid-edge-native has no command {cmd.target!r}; commands: {', '.join(sorted(options))}")
    bad = [a for a in cmd.args if a.startswith("--") and a not in options[cmd.target]]
    if bad:
        raise AssertionError(f"irreid-edge-native {cmd.target}: unknown option(s) {bad}; "
                             f"valid: {', '.join(sorted(options[cmd.target]))}")


def loop_values(text: str) -> dict[str, str]:
    """`for v in baseline vanilla ...; do` -> {"v": "baseline"}: a loop variable takes its first value."""
    return {m.group(1): m.group(2).split()[0] for m in re.finditer(r"\bfor\s+(\w+)\s+in\s+([^;\n]+);", text)}


def check_command(argv: list[str], variables: dict[str, str] | None = None) -> OurCommand | None:
    """Parse one of our commands with its real parser; None when the command is not ours."""
    cmd = classify(argv)
    if cmd is None:
        return None
    # A shell variable stands for a value the parser will see: a loop's first value, else "1".
    values = variables or {}
    cmd.args = [_SHELL_VAR.sub(lambda m: values.get(m.group(0).strip("${}"), "1"), a) for a in cmd.args]
    if cmd.kind == "native":
        check_native(cmd)
        return cmd
    if _script_without_parser(cmd):
        return cmd
    ns = parse_or_explain(parser_for(cmd), cmd.args)
    validate_values(cmd, ns)
    return cmd
