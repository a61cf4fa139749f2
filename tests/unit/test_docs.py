"""The user documentation (README.md and docs/) matches the product it describes.

Every `twinstream` command shown parses against the real command line (without running it), every
`make` target exists, every `TWINSTREAM_*` variable is a real setting (or one the command line reads),
every relative link and anchor resolves, the result document shown decodes, the README stays short, and
no page narrates how the code was developed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Iterator
from copy import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from cli.main import app
from twinstream.codec import result_from_dict
from twinstream.config import Settings

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 180
#: Words that narrate development rather than describe the product.
HISTORY_WORDS = ("session", "we tried", "tried and", "no longer", "used to")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
VARIABLE = re.compile(r"TWINSTREAM_[A-Z0-9_]*[A-Z0-9]")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {";", "&&", "||", "|", "&"}
#: A redirection (``< file``, ``> out``, ``2>&1``); ``<version>`` is a placeholder, not one.
REDIRECT = re.compile(r"<{1,2}$|\d?>")
#: Inline spans that abbreviate rather than spell a command (alternatives, elisions, optional parts).
NOT_LITERAL = ("|", "...", "…", "[")
#: The command line's own exception for a command it cannot parse (typer may vendor click).
USAGE_ERROR: type[Exception] = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")


@dataclass(frozen=True)
class Command:
    """One command as the documentation shows it.

    ``inline``: named in running text, where a command may be referred to without its required
    arguments (`twinstream erase`) and ``N`` stands for a number; code blocks spell commands in full.
    """

    where: str  # page:line
    argv: tuple[str, ...]
    inline: bool = False


def _rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _blocks(page: Path) -> Iterator[tuple[int, str, str]]:
    """(first line of the body, language, body) of each fenced code block."""
    text = page.read_text()
    for found in FENCE.finditer(text):
        yield _line_of(text, found.start("body")), found["lang"], found["body"]


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (same line count)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())


def _logical_lines(body: str, first: int) -> Iterator[tuple[int, str]]:
    """Lines of a shell block with backslash continuations joined, each with its first line number."""
    pending, start = "", first
    for number, line in enumerate(body.splitlines(), first):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _simple_commands(line: str) -> Iterator[list[str]]:
    """The commands of one shell line: split at ; && || | &, cut at redirections, comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    current: list[str] = []
    cut = False
    for token in lexer:
        if token in SEPARATORS:
            if current:
                yield current
            current, cut = [], False
        elif cut or REDIRECT.match(token):
            cut = True
        else:
            current.append(token)
    if current:
        yield current


def _without_assignments(argv: list[str]) -> list[str]:
    """``A=1 B=2 twinstream ...`` → ``twinstream ...``."""
    while argv and ASSIGNMENT.match(argv[0]):
        argv = argv[1:]
    return argv


def documented_commands(program: str) -> list[Command]:
    """Every command starting with ``program`` in shell code blocks, and inline spans that spell one."""
    found = []
    for page in PAGES:
        for first, lang, body in _blocks(page):
            if lang not in SHELL_LANGUAGES:
                continue
            for number, line in _logical_lines(body, first):
                for argv in map(_without_assignments, _simple_commands(line)):
                    if argv and argv[0] == program:
                        found.append(Command(f"{_rel(page)}:{number}", tuple(argv)))
        prose = _prose(page)
        for span in INLINE_CODE.finditer(prose):
            code = span[1]
            if code.startswith(f"{program} ") and not any(mark in code for mark in NOT_LITERAL):
                argv = ["2" if token == "N" else token for token in shlex.split(code, comments=True)]
                found.append(Command(f"{_rel(page)}:{_line_of(prose, span.start())}", tuple(argv), True))
    return found


def _no_path_checks(command: Any) -> None:
    """Let documented example files (``alice.jpg``, ``models/<version>``) parse without existing."""
    for param in getattr(command, "params", ()):
        descriptor: Any = getattr(param, "type_descriptor", None)
        info: Any = getattr(descriptor, "parameter_info", None)
        if getattr(info, "exists", False):
            relaxed = copy(info)
            relaxed.exists = False
            param.type_descriptor = dataclasses.replace(descriptor, parameter_info=relaxed)
        click_type: Any = getattr(param, "type", None)  # click's own Path type, where typer uses it
        if getattr(click_type, "exists", False):
            param.type = copy(click_type)
            param.type.exists = False


def parse(argv: tuple[str, ...]) -> None:
    """Parse ``twinstream ARGS`` down to the leaf command, as the shell would call it; nothing runs.

    Raises:
        The command line's UsageError (unknown command or option, bad value, missing argument).
    """
    command: Any = typer.main.get_command(app)
    name, args, parent = "twinstream", list(argv[1:]), None
    while True:
        _no_path_checks(command)
        context = command.make_context(name, args, parent=parent, resilient_parsing=False)
        if not hasattr(command, "resolve_command"):
            return
        protected = getattr(context, "_protected_args", None)  # click < 8.2 calls it protected_args
        rest = [*(context.protected_args if protected is None else protected), *context.args]
        if not rest:
            return
        name, command, args = command.resolve_command(context, rest)
        parent = context


TWINSTREAM_COMMANDS = documented_commands("twinstream")


def test_the_documentation_shows_twinstream_commands() -> None:
    pages = {c.where.split(":")[0] for c in TWINSTREAM_COMMANDS}
    assert {"README.md", "docs/operations.md", "docs/security.md"} <= pages, pages


@pytest.mark.parametrize("command", TWINSTREAM_COMMANDS, ids=lambda c: c.where)
def test_every_documented_twinstream_command_parses(command: Command) -> None:
    try:
        parse(command.argv)
    except USAGE_ERROR as exc:
        if command.inline and type(exc).__name__ == "MissingParameter":
            return  # a reference to the command by name, not an invocation
        pytest.fail(f"{command.where}: `{shlex.join(command.argv)}` does not parse: {exc}")


def test_a_command_the_cli_lacks_is_caught() -> None:
    with pytest.raises(USAGE_ERROR):
        parse(("twinstream", "models", "promte", "v1"))
    with pytest.raises(USAGE_ERROR):
        parse(("twinstream", "train", "--no-such-option"))


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w-]*)\s*:(?!=)", text, re.M))


def documented_make_targets() -> list[tuple[str, str]]:
    found = [(c.where, target) for c in documented_commands("make") for target in c.argv[1:]]
    for page in PAGES:
        prose = _prose(page)
        for span in re.finditer(r"`make ([^`]+)`", prose):
            found += [(f"{_rel(page)}:{_line_of(prose, span.start())}", t) for t in span[1].split()]
    return [(where, t) for where, t in found if "=" not in t and not t.startswith("-")]


def test_every_documented_make_target_exists() -> None:
    targets = _makefile_targets()
    documented = documented_make_targets()
    assert documented, "the documentation names no make target"
    missing = [f"{where}: make {target}" for where, target in documented if target not in targets]
    assert not missing, f"not Makefile targets: {missing}"


def _is_setting(name: str) -> bool:
    """``TWINSTREAM_GROUP__FIELD`` names ``Settings().group.field`` (or ``TWINSTREAM_FIELD`` a top field)."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix("TWINSTREAM_").lower().split("__")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if index < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _read_by_the_cli(name: str) -> bool:
    """A variable the command line reads itself (``TWINSTREAM_API_KEY``, ``TWINSTREAM_BENCH_OUT``)."""
    return any(f'"{name}"' in path.read_text() for path in (REPO / "cli").rglob("*.py"))


def test_every_documented_variable_is_a_setting_or_read_by_the_cli() -> None:
    unknown = []
    seen = 0
    for page in PAGES:
        text = page.read_text()
        for found in VARIABLE.finditer(text):
            seen += 1
            name = found[0]
            if not (_is_setting(name) or _read_by_the_cli(name)):
                unknown.append(f"{_rel(page)}:{_line_of(text, found.start())}: {name}")
    assert seen, "the documentation names no TWINSTREAM_ variable"
    assert not unknown, f"neither settings nor read by the CLI: {sorted(set(unknown))}"


def test_the_settings_table_names_every_setting() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    expected = []
    for group, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            expected += [f"TWINSTREAM_{group}__{name}".upper() for name in annotation.model_fields]
        else:
            expected.append(f"TWINSTREAM_{group}".upper())
    missing = [name for name in expected if f"`{name}`" not in text]
    assert not missing, f"docs/operations.md#settings lacks {missing}"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(page), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        prose = _prose(page)
        for found in LINK.finditer(prose):
            target = found[1]
            if re.match(r"[a-z]+:", target):
                continue
            where = f"{_rel(page)}:{_line_of(prose, found.start())}"
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            if not destination.exists():
                broken.append(f"{where}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
                broken.append(f"{where}: {target} (no such heading)")
    assert not broken, broken


def test_json_examples_parse_and_the_result_document_decodes() -> None:
    decoded = 0
    for page in PAGES:
        for first, lang, body in _blocks(page):
            if lang != "json":
                continue
            document = json.loads(body)
            if isinstance(document, dict) and {"request_id", "decision"} <= document.keys():
                result = result_from_dict(document)
                assert result.request_id == document["request_id"], f"{_rel(page)}:{first}"
                decoded += 1
    assert decoded, "no page shows the result document"


def test_no_page_narrates_development() -> None:
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            lowered = VARIABLE.sub("", line).lower()  # setting names (SESSION_TIMEOUT_MS) are the product's
            found += [f"{_rel(page)}:{number}: {word!r}" for word in HISTORY_WORDS if word in lowered]
    assert not found, found


def test_the_readme_stays_short() -> None:
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
