"""The docs stay true: set-up commands, CI, CLI commands, config fields, module list, and every page
in both languages with links that lead somewhere and the same numbers (issue 24: docs/zh/ is each
page in Chinese)."""

import dataclasses
import re
from collections import Counter
from pathlib import Path

from engine.cli import COMMANDS, build_parser
from engine.evaluation.evaluate import EVAL_METHODS, EvalConfig
from engine.sampling import ORDERS, SamplingConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ARCH = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
DOCS = ROOT / "docs"
ZH = DOCS / "zh"
LINK = re.compile(r"\]\(([^)\s]+)\)")       # a markdown link's target: ](target)
# a number as the docs write one: 51.0, 1,189, 0.554, 2026 (thousands commas dropped before comparing)
NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", README)


def test_readme_opens_with_the_two_setup_commands():
    head = "\n".join(README.splitlines()[:15])
    install, tests = readme_commands()[:2]
    assert install in head and tests in head
    assert "pip install" in install and install.endswith("thoughtscope")
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_every_cli_command_and_eval_method_is_in_the_readme():
    for cmd in COMMANDS:
        assert f"thoughtscope {cmd}" in README or (cmd == "serve" and "thoughtscope serve" in README)
    for method in EVAL_METHODS:
        assert method in README
    for order in ORDERS:
        assert order in README


def test_every_config_field_is_a_cli_flag():
    help_text = {name: sub.format_help() for name, sub in
                 build_parser()._subparsers._group_actions[0].choices.items()}
    for f in dataclasses.fields(SamplingConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text["generate"], f.name
    for f in dataclasses.fields(EvalConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text["eval"], f.name


def test_modules_named_in_architecture_exist_unless_planned():
    for row in re.findall(r"^\| (`.+?`) \|(.+)$", ARCH, flags=re.M):
        names, rest = row
        if "**planned**" in rest:
            continue
        for name in re.findall(r"`([\w/]+\.py)`", names):
            assert (ROOT / "engine" / name).exists() or (ROOT / "app" / name).exists(), \
                f"docs/ARCHITECTURE.md names {name}, which is in neither engine/ nor app/"


def test_every_doc_has_a_chinese_twin_linked_both_ways():
    # Teachers read these pages in Chinese too: a page added to docs/ without docs/zh/ fails here.
    for doc in sorted(DOCS.glob("*.md")):
        twin = ZH / doc.name
        assert twin.exists(), f"docs/{doc.name} has no Chinese version docs/zh/{doc.name}"
        assert f"](zh/{doc.name})" in doc.read_text(), f"docs/{doc.name} does not link zh/{doc.name}"
        assert f"](../{doc.name})" in twin.read_text(), f"docs/zh/{doc.name} does not link back to ../{doc.name}"
    for twin in sorted(ZH.glob("*.md")):
        assert (DOCS / twin.name).exists(), f"docs/zh/{twin.name} translates no docs/{twin.name}"


def test_relative_links_in_the_docs_resolve():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(ZH.glob("*.md"))]
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)     # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):   # http:, mailto:, an anchor
                continue
            assert (page.parent / target.split("#")[0]).exists(), \
                f"{page.relative_to(ROOT)} links {target}, which does not exist"


def numbers(text: str) -> Counter:
    """How often each number occurs in ``text`` ("1,189" and "1189" are one number).
    Example: numbers("51.0 % of 1,189, then 51.0") == Counter({"51.0": 2, "1189": 1})."""
    return Counter(n.replace(",", "") for n in NUMBER.findall(text))


def missing_numbers(english: str, chinese: str) -> dict[str, tuple[int, int]]:
    """{number: (times in the English, times in the Chinese)} for each number the Chinese has
    fewer times. A multiset, not a set: a dropped sentence whose numbers also occur elsewhere on the
    page (a table's "1", a default of 8) is caught too; the Chinese may have more (its own examples)."""
    en, zh = numbers(english), numbers(chinese)
    return {n: (k, zh[n]) for n, k in sorted(en.items()) if zh[n] < k}


def test_missing_numbers_counts_each_occurrence():
    assert numbers("51.0 % of 1,189, then 51.0; T = 0.5,1,1.5") == Counter(
        {"51.0": 2, "1189": 1, "0.5": 1, "1": 1, "1.5": 1})
    assert missing_numbers("0.554 and 0.554, 2 runs", "0.554，两次运行，共 7 个") == {"0.554": (2, 1), "2": (1, 0)}
    assert missing_numbers("1,189 tokens", "1189 个词元，1,189") == {}


def test_every_number_of_an_english_page_is_in_its_chinese_twin():
    # a figure, default, count or version in a page and not in its translation is a stale or
    # shortened translation; the Chinese writes every number in digits as the English does
    pages = sorted(DOCS.glob("*.md"))
    # every page: the PPM and scaling pages were left out while they were being rewritten
    assert len(pages) >= 17 and {"ppm.md", "scaling.md"} <= {doc.name for doc in pages}
    stale = {doc.name: gap for doc in pages
             if (gap := missing_numbers(doc.read_text(encoding="utf-8"), (ZH / doc.name).read_text(encoding="utf-8")))}
    assert stale == {}, f"docs/zh/ pages missing numbers of their English (number: (English, Chinese)): {stale}"


def test_architecture_names_every_cli_command_and_its_file():
    # the cli row of both ARCHITECTURE pages lists each `thoughtscope` command (issue 24: it had 11 of 17)
    for page in (ARCH, (ZH / "ARCHITECTURE.md").read_text(encoding="utf-8")):
        row = next(line for line in page.splitlines() if line.startswith("| `cli/__init__.py`"))
        named = set(re.findall(r"`(?:run )?([a-z][a-z-]*)(?: METHOD)?`", row))
        assert sorted(set(COMMANDS) - named) == []
        for path in re.findall(r"`(cli/\w+\.py)`", row):
            assert (ROOT / "engine" / path).exists(), path
