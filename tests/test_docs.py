"""The docs stay true: set-up commands, CI, CLI commands, config fields, module list."""

import dataclasses
import re
from pathlib import Path

from engine.cli import COMMANDS, build_parser
from engine.evaluation.evaluate import EVAL_METHODS, EvalConfig
from engine.sampling import ORDERS, SamplingConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ARCH = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


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
