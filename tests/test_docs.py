"""The documentation stays true to the tree: the README is a short front door whose test command
is CI's; every link, every file path the docs cite and every `sweeps` command they show exists."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from sweeps.cli.commands import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "search_spaces" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README_MAX_LINES = 130  # read in three minutes; the rest lives in docs/

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
# A path under one of the repository's folders, with an extension, as written in `code`.
CITED_PATH = re.compile(r"`((?:\.ci|benchmarks|docs|experiments|models|search_spaces|sweeps|tests)/[\w./-]*\w\.\w+)")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (whose `#` lines are comments, not headings)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def code(path: Path) -> str:
    """The page's fenced code blocks only."""
    return "\n".join(m.group(0) for m in FENCE.finditer(path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... on repeats."""
    ids: set[str] = set()
    repeats: dict[str, int] = {}
    for heading in HEADING.findall(prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        count = repeats.get(slug, 0)
        repeats[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        resolved = (page.parent / target).resolve() if target else page
        if not resolved.exists():
            broken.append(f"{link}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{link}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page_id(page)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_cited_repository_path_exists(page):
    missing = sorted({p for p in CITED_PATH.findall(page.read_text(encoding="utf-8")) if not (ROOT / p).exists()})
    assert not missing, f"{page_id(page)} cites files that do not exist: {', '.join(missing)}"


def test_the_readme_is_a_front_door_of_at_most_130_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details into docs/"


def test_ci_runs_the_readmes_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert len(ci) == 1, f".ci/run should run one command, runs {ci}"
    commands = {ln.split("#")[0].strip() for ln in code(README).splitlines()}
    assert ci[0] in commands, f".ci/run runs {ci[0]!r}, which no code block of README.md shows"


def documented_commands(page: Path) -> list[list[str]]:
    """The arguments of every `python -m sweeps ...` in the page's code blocks, continued lines joined."""
    commands = []
    for line in code(page).replace("\\\n", " ").splitlines():
        if "-m sweeps" not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        for start in (i + 1 for i, word in enumerate(words[:-1]) if (word, words[i + 1]) == ("-m", "sweeps")):
            end = next((i for i in range(start, len(words)) if words[i] in (";", "&&", "|")), len(words))
            commands.append(words[start + 1:end])
    return commands


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_documented_sweeps_command_parses_with_the_real_cli(page):
    parser, refused = build_parser(), []
    for args in documented_commands(page):
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.suppress(SystemExit):
            parser.parse_args(args)
        if err.getvalue():
            refused.append(f"sweeps {shlex.join(args)}: {err.getvalue().strip().splitlines()[-1]}")
    assert not refused, f"{page_id(page)}: " + "; ".join(refused)
