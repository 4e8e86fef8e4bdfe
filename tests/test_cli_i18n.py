"""The CLI in Chinese (issue 24 part 1): LANG / LC_ALL choose the language of the help texts and
of the error line, argparse's own words and the engine's messages included (app/i18n.py
`message`: tests/test_i18n_engine_messages.py). The help texts built in engine/cli/__init__.py
(serve, hash-password, models, generate, eval, bench, sandbox, run and every `run METHOD` with its
generated setting flags, the model and sampling flags) and those of sessions (and its
sub-commands), export, sweep, triage, export-pairs, compare, evolve, collect-pairs and train-ppm go
through the catalogue and each has a Chinese entry; so do the status lines on stderr (run's start,
"wrote", "deleted", progress), while --json output is the same under any LANG."""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from app import i18n

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_bad_flag_is_one_line_in_the_environment_language():
    zh = cli("eval", "--tier", "nope", lang="zh_CN.UTF-8")
    assert zh.returncode == 2 and zh.stdout == ""
    assert zh.stderr.strip() == ("thoughtscope eval：参数 --tier：无效的选择：'nope'（可选：'easy', 'medium', 'hard'）"
                                 "（见 thoughtscope eval --help）")
    en = cli("eval", "--tier", "nope", lang="C.UTF-8")
    assert en.returncode == 2
    assert en.stderr.strip() == ("thoughtscope eval: argument --tier: invalid choice: 'nope' (choose from 'easy', "
                                 "'medium', 'hard') (see thoughtscope eval --help)")


def test_help_is_chinese_under_a_chinese_locale():
    out = cli("serve", "--help", lang="zh_CN.UTF-8")
    assert out.returncode == 0
    assert out.stdout.startswith("用法：thoughtscope serve")
    assert "显示此帮助信息并退出" in out.stdout
    assert "绑定的地址（默认只绑定回环地址）" in out.stdout
    assert "address to bind" in cli("serve", "--help", lang="en_US.UTF-8").stdout


def test_every_help_text_through_the_catalogue_has_a_chinese_entry(monkeypatch):
    import engine.cli as c
    monkeypatch.setattr(argparse, "_", lambda text: i18n.translate(text))
    i18n.missing.clear()
    with i18n.using("zh"):
        parser = c.build_parser()
        texts = [parser.format_help()]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                texts += [sub.format_help() for name, sub in action.choices.items() if name != "run"]
    assert len(texts) > 8
    assert sorted(i18n.missing) == []
    assert "启动网页应用（默认命令）" in texts[0] and "在留出题目或你自己的数据集上测准确率" in texts[0]


def test_the_other_command_families_help_is_chinese_too(monkeypatch):
    out = cli("sessions", "list", "--help", lang="zh_CN.UTF-8")
    assert out.returncode == 0
    assert "只列出这种方法的运行" in out.stdout and "保存运行的 SQLite 文件（默认：$THOUGHTSCOPE_DB 或用户数据文件夹）" in out.stdout
    assert "only runs of this method" in cli("sessions", "list", "--help", lang="en_US.UTF-8").stdout
    # a filled-in field: the margin's default reaches the Chinese text
    assert "保留 q_chosen - q_rejected >= 此值的偏好对（默认 0.1）" in cli("export-pairs", "--help",
                                                                        lang="zh_CN.UTF-8").stdout

    import engine.cli as c
    monkeypatch.setattr(argparse, "_", lambda text: i18n.translate(text))
    i18n.missing.clear()
    with i18n.using("zh"):
        subs = next(a for a in c.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
        texts = [subs[name].format_help() for name in ("sessions", "export", "sweep", "triage", "export-pairs",
                                                       "compare", "evolve", "collect-pairs", "train-ppm")]
        sessions_sub = next(a for a in subs["sessions"]._actions if isinstance(a, argparse._SubParsersAction))
        texts += [sub.format_help() for sub in sessions_sub.choices.values()]
    assert len(texts) == 14
    assert sorted(i18n.missing) == []
    assert "同时把扫描结果的 JSON 写到 PATH" in texts[2] and "会话 ID（或它的唯一前缀）" in texts[1]
    assert "在本地模型上运行 rStar-Math 的自我进化" in texts[6] and "要写入的 PPM 文件夹" in texts[8]


def test_run_method_help_and_a_bad_setting_are_chinese(monkeypatch):
    out = cli("run", "mcts", "--help", lang="zh_CN.UTF-8")
    assert out.returncode == 0
    zh = i18n.catalogue("zh")
    assert zh["MCTS (step-level)"] + "：运行一次搜索" in out.stdout      # the method's description
    assert "--rollouts ROLLOUTS" in out.stdout and "默认 8" in out.stdout and "default 8" not in out.stdout
    assert "default 8" in cli("run", "mcts", "--help", lang="en_US.UTF-8").stdout
    # an engine message on the error line: the config refuses the value before any model loads
    bad = cli("run", "mcts", "--question", "1 + 1", "--rollouts", "0", lang="zh_CN.UTF-8")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("rollouts 必须是 1 到 10000 之间的整数，收到的是 0"), bad.stderr
    empty = cli("run", "mcts", "--question", " ", lang="zh_CN.UTF-8")
    assert "--question 为空：请输入一个问题，或随机选一道题" in empty.stderr
    stray = cli("run", "greedy", "--question", "1 + 1", "--rollouts", "4", lang="zh_CN.UTF-8")
    assert stray.returncode == 2 and stray.stderr.startswith("thoughtscope：--rollouts 不适用于方法 'greedy'（它接受 ")

    import engine.cli as c
    monkeypatch.setattr(argparse, "_", lambda text: i18n.translate(text))
    i18n.missing.clear()
    with i18n.using("zh"):
        subs = next(a for a in c.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
        methods = next(a for a in subs["run"]._actions if isinstance(a, argparse._SubParsersAction)).choices
        texts = [sub.format_help() for sub in methods.values()]
    assert len(texts) >= 10
    assert sorted(i18n.missing) == []


def test_every_cli_text_through_the_catalogue_has_a_chinese_entry():
    # help texts, error frames and status lines alike: every literal handed to `_t` in engine/cli/
    from engine.cli.progress import DONE
    said = set(DONE.values())
    for path in sorted((ROOT / "engine" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_t"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                said.add(node.args[0].value)
    assert {"wrote {path}", "session {sid}: running {method} …", "{desc}: {done}, {elapsed} s"} <= said
    zh = i18n.catalogue("zh")
    assert sorted(text for text in said if text not in zh) == []


def test_progress_lines_in_a_log_are_chinese_under_zh(monkeypatch):
    from engine.cli import progress as P
    clock = iter([0.0, 1.0, 31.0, 32.0])
    tokens = iter([0, 620, 640])                       # sampled so far: at the start, at 31 s, at 32 s
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    with i18n.using("zh"), P.progress(3, "rstar hard", file=out, tokens=lambda: next(tokens)) as bar:
        bar.update()                   # at 1 s: too soon for a line
        bar.update()                   # at 31 s: 620 tokens in 31 s, one problem left at 15.5 s each
        bar.update()                   # at 32 s: the last one always prints
    assert out.getvalue().splitlines() == ["rstar hard：2/3 道题，31 秒，每秒 20 个词元，约剩 16 秒",
                                           "rstar hard：3/3 道题，32 秒，每秒 20 个词元"]


def test_status_lines_follow_lang_and_the_json_does_not(tmp_path):
    from engine.search import METHODS
    zh_label = i18n.catalogue("zh")[METHODS["greedy"].label]
    db = tmp_path / "runs.db"
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    ran = cli("run", "greedy", "--question", question, "--db", str(db), "--threads", "1", "--json",
              lang="zh_CN.UTF-8")
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)                       # stdout is the JSON alone, its keys English
    assert out["method"] == "greedy" and out["status"] == "done"
    sid = out["session_id"]
    assert ran.stderr.strip() == f"会话 {sid}：正在运行 {zh_label} …"
    exported = cli("export", "--db", str(db), "--session", sid[:8], "--format", "json",
                   "--out", str(tmp_path / "run.json"), lang="zh_CN.UTF-8")
    assert exported.returncode == 0 and exported.stderr.strip() == f"已写入 {tmp_path / 'run.json'}"
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["session"]["session_id"] == sid
    gone = cli("sessions", "delete", sid, "--db", str(db), lang="zh_CN.UTF-8")
    assert gone.returncode == 0 and gone.stderr.strip() == f"已删除 {sid}"
    assert cli("sessions", "list", "--db", str(db), lang="C.UTF-8").stderr.strip() == f"no sessions in {db}"
    # eval's progress: a log line (stderr is a pipe here) at the end, in Chinese; the summary JSON as ever
    ev = cli("eval", "--method", "greedy", "--tier", "easy", "--n", "2", "--threads", "1", "--json",
             lang="zh_CN.UTF-8")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["n"] == 2
    assert re.fullmatch(r"greedy easy：2/2 道题，\d+ 秒(，每秒 \d+ 个词元)?", ev.stderr.strip()), ev.stderr
