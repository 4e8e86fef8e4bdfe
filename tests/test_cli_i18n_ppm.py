"""The CLI's PPM, evolution and bench lines in Chinese (issue 24 follow-up): under LANG=zh_CN.UTF-8,
collect-pairs' and train-ppm's stderr lines, evolve's progress labels, phase lines and round lines
(engine/ppm/evolve.py and phases.py word them through the `_t` the CLI hands them), and bench's
report and step lines come out in Chinese; --json output is the same under any LANG. Real runs:
the embedded model, the tiny random Llama of tests/conftest.py, a real SQLite file."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import i18n
from engine.pairs import Pair

ROOT = Path(__file__).resolve().parents[1]
# an English sentence: a word, then 3 or more words or numbers, spaces, commas or hyphens between
# them (a path, a model id like arith-llama-3m, 3.2M or float32 is none of these); a shorter English
# phrase is caught by assert_chinese's other check, every line must hold Chinese
ENGLISH = re.compile(r"(?<![\w./-])[A-Za-z]+\b(?:[ ,-]+(?:[A-Za-z]+|\d[\d.]*)\b){3,}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def cli(*args: str, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_chinese(text: str) -> None:
    """Every line says something in Chinese, and no line holds an English sentence."""
    lines = text.strip().splitlines()
    assert lines
    assert [line for line in lines if not CJK.search(line)] == []
    assert [m.group(0) for m in ENGLISH.finditer(text)] == []


def test_the_english_check_catches_the_old_lines_and_passes_the_chinese_ones():
    assert ENGLISH.search("wrote 3 pairs to /tmp/p.jsonl and 2 trajectories to /tmp/p.traj.jsonl")
    assert ENGLISH.search("round 1: fine-tune the policy")
    assert ENGLISH.search("PPM saved to /tmp/ppm: pairwise accuracy 1.000 on 2 training pairs")
    assert ENGLISH.search("sibling expansion, generated tokens/s (one batched call vs k calls):")
    assert not ENGLISH.search("thoughtscope 基准测试 — arith-llama-3m (LlamaForCausalLM, 3.2M parameters, cpu, float32)")
    assert not ENGLISH.search("第 1 轮：贪心 50.0 %，自洽性 50.0 %，MCTS（self_consistency）50.0 %，PPM 成对准确率 -")


def test_every_engine_line_the_cli_says_has_a_chinese_entry():
    # evolve's lines and labels are templates handed to `say` in engine/ppm/; bench's steps are STEPS
    from engine.evaluation.bench import STEPS
    from engine.ppm.phases import LABELS
    said = set(LABELS.values()) | set(STEPS.values())
    for path in sorted((ROOT / "engine" / "ppm").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "say" and node.args:
                first = node.args[0]
                options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
                said |= {o.value for o in options if isinstance(o, ast.Constant) and isinstance(o.value, str)}
    assert {"round {round}: done before, kept", "round {round}: collect ({problems} problems, {rollouts} rollout)",
            "greedy {greedy}, SC {sc}, MCTS ({reward}) {mcts}, PPM pairwise {ppm}", "round {round} eval {method}",
            "tree redraws"} <= said
    zh = i18n.catalogue("zh")
    assert sorted(text for text in said if text not in zh) == []


def test_collect_pairs_says_its_lines_in_chinese_and_its_json_is_the_same(tmp_path):
    out = tmp_path / "new" / "folder" / "pairs.jsonl"           # made before the collection starts
    args = ["collect-pairs", "--problems", "4", "--rollouts", "4", "--threads", "1"]
    ran = cli(*args, "--out", str(out), lang="zh_CN.UTF-8")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert_chinese(ran.stderr)
    bar, wrote = ran.stderr.strip().splitlines()
    assert re.fullmatch(r"收集偏好对（MCTS，标准答案奖励）：4/4 道题，\d+ 秒(，每秒 \d+ 个词元)?", bar), bar
    traj = out.with_suffix(".traj.jsonl")
    pairs, trajectories = (len(p.read_text(encoding="utf-8").splitlines()) for p in (out, traj))
    assert trajectories > 0
    assert wrote == f"已把 {pairs} 个偏好对写入 {out}，把 {trajectories} 条轨迹写入 {traj}"
    # --json: the summary on stdout, byte for byte the same in English and Chinese
    zh = cli(*args, "--out", str(tmp_path / "zh.jsonl"), "--json", lang="zh_CN.UTF-8")
    en = cli(*args, "--out", str(tmp_path / "en.jsonl"), "--json", lang="C.UTF-8")
    assert zh.returncode == en.returncode == 0, zh.stderr + en.stderr
    assert zh.stdout == en.stdout and json.loads(zh.stdout)["trajectories"] == trajectories
    assert en.stderr.startswith("collect pairs (MCTS, gold reward): 4/4 problems")


def test_train_ppm_says_its_lines_in_chinese(tiny_llama_dir, tmp_path):
    from engine.ppm.data import write_pairs
    pairs = [Pair(f"Question: Q{i}?\n", "Step 1: 2 + 3 = 5\n", "Step 1: 2 + 3 = 6\n", 0.5, -0.5, 0, 1, 2, f"s{i}")
             for i in range(3)]
    write_pairs(tmp_path / "train.jsonl", pairs[:2])
    write_pairs(tmp_path / "held.jsonl", pairs[2:])
    out = tmp_path / "ppm"
    ran = cli("train-ppm", "--pairs", str(tmp_path / "train.jsonl"), "--held-out-pairs", str(tmp_path / "held.jsonl"),
              "--model", str(tiny_llama_dir), "--out", str(out), "--epochs", "1", "--threads", "1",
              lang="zh_CN.UTF-8")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert_chinese(ran.stderr)
    bar, saved = ran.stderr.strip().splitlines()
    assert re.fullmatch(r"训练 PPM：1/1 步，\d+ 秒", bar), bar       # 2 pairs, batch 16: one step
    metrics = json.loads((out / "ppm.json").read_text(encoding="utf-8"))["metrics"]
    assert saved == (f"PPM 已保存到 {out}：在 2 个训练偏好对上的成对准确率为 {metrics['train_accuracy']:.3f}，"
                     f"在 1 个留出偏好对（它没有训练过的题目）上为 {metrics['held_out_accuracy']}")


EVOLVE = ["--rounds", "1", "--train-problems", "8", "--rollouts", "16", "--eval-n", "2", "--eval-rollouts", "2",
          "--sc-samples", "2", "--examples", "1", "--ppm-epochs", "1", "--ppm-min-pairs", "1", "--max-steps", "2",
          "--seed", "0"]
PCT = r"(\d+\.\d %|-)"


@pytest.mark.slow
def test_evolve_labels_its_phases_and_rounds_in_chinese(tmp_path):
    # tests/test_evolve.py's tiny run (8 problems x 16 rollouts, 2 held-out problems), through the CLI
    from engine.evolution_store import EvolutionStore
    from engine.store import Store
    db, out = tmp_path / "runs.db", tmp_path / "out"
    ran = cli("evolve", *EVOLVE, "--out", str(out), "--db", str(db), lang="zh_CN.UTF-8")
    assert ran.returncode == 0, ran.stderr
    assert_chinese(ran.stderr)
    assert_chinese(ran.stdout)
    lines = ran.stderr.strip().splitlines()
    run_id = json.loads((out / "evolve.json").read_text())["run_id"]
    assert lines[0] == f"自我进化运行 {run_id}：{out}（数据库 {db}）"
    # every phase's bar, labelled in Chinese and counted in its own unit (stderr is a pipe: log lines)
    bars = [m.groups() for m in (re.fullmatch(r"(.+?)：\d+/\d+ (道题|步|轮)，\d+ 秒.*", line) for line in lines) if m]
    assert bars == [("第 0 轮评估 greedy", "道题"), ("第 0 轮评估 sc", "道题"), ("第 0 轮评估 mcts", "道题"),
                    ("第 1 轮收集", "道题"), ("第 1 轮微调", "步"), ("第 1 轮训练 PPM", "步"),
                    ("第 1 轮评估 greedy", "道题"), ("第 1 轮评估 sc", "道题"), ("第 1 轮评估 mcts", "道题")]
    for phase in ("第 0 轮：在留出的 hard 档题目上评估（n = 2）", "第 1 轮：收集（8 道题，每题 16 次推演）",
                  "第 1 轮：微调策略模型", "第 1 轮：训练 PPM", "第 1 轮：在留出的 hard 档题目上评估（n = 2）"):
        assert phase in lines
    # the round lines (on stderr as each round ends, on stdout at the end) say the stored numbers
    with Store(db) as store:
        rows = EvolutionStore(store).rounds(run_id)

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f} %"
    said = [re.fullmatch(rf"第 (\d) 轮：贪心 {PCT}，自洽性 {PCT}，MCTS（(\w+)）{PCT}，PPM 成对准确率 {PCT}"
                         r"(?:，(\d+) 条轨迹，(\d+) 个偏好对)?", line) for line in ran.stdout.strip().splitlines()]
    assert all(said), ran.stdout
    assert [m.groups() for m in said] == [
        (str(r["round"]), pct(r["greedy_accuracy"]), pct(r["sc_accuracy"]), r["mcts_reward"], pct(r["mcts_accuracy"]),
         pct(r["ppm_pairwise_accuracy"]), *((str(r["trajectories"]), str(r["pairs"])) if r["round"] else (None, None)))
        for r in rows]
    assert [line for line in lines if line in ran.stdout.splitlines()] == ran.stdout.strip().splitlines()
    # the same command again: both rounds were done and are kept, said in Chinese
    again = cli("evolve", *EVOLVE, "--out", str(out), "--db", str(db), lang="zh_CN.UTF-8")
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[1:] == ["第 0 轮：之前已完成，保留", "第 1 轮：之前已完成，保留"]
    assert again.stdout == ran.stdout


def test_bench_report_and_steps_are_chinese():
    ran = cli("bench", "--quick", "--threads", "1", "--prefix-cache-mb", "0", lang="zh_CN.UTF-8")
    assert ran.returncode == 0, ran.stderr
    assert_chinese(ran.stdout)
    assert_chinese(ran.stderr)
    assert ran.stderr.strip().splitlines() == ["bench：已忽略 --prefix-cache-mb 0：有缓存的模式使用默认上限",
                                               "bench：使用前缀缓存的 MCTS…", "bench：不用前缀缓存的 MCTS（每个提示都重新编码）…",
                                               "bench：兄弟节点的批量扩展与逐个扩展…", "bench：树的重绘…"]
    report = ran.stdout.splitlines()
    assert report[0].startswith("thoughtscope 基准测试 — arith-llama-3m")
    assert re.fullmatch(r"MCTS，2 次推演 × 每次扩展 3 个子节点：\d+ 个节点，树中共 \d+ 个各不相同的词元", report[1])
    assert re.fullmatch(r"  \[(达标|未达标)\] 计算的词元 / 树中词元，有缓存：[\d.]+（计算 \d+ 个，复用 \d+ 个；目标 <= 1\.05）",
                        report[2]), report[2]
    assert [line for line in report if "个节点：" in line][0].strip().startswith("50 个节点：")


def test_the_bench_report_reads_each_target_in_chinese():
    from engine.cli.bench import format_report
    from test_bench import sample_result
    r = sample_result(same_tree=False)
    with i18n.using("zh"):
        text = format_report(r)
    assert text.splitlines() == [
        "thoughtscope 基准测试 — m",
        "MCTS，2 次推演 × 每次扩展 3 个子节点：7 个节点，树中共 100 个各不相同的词元  （警告：有缓存和无缓存的两棵树不同）",
        "  [达标] 计算的词元 / 树中词元，有缓存：1.0（计算 100 个，复用 500 个；目标 <= 1.05）",
        "  [达标] 计算的词元 / 树中词元，无缓存：6.0（目标 >= 5.0）",
        "  每次推演：有缓存 0.5 秒，无缓存 1.5 秒；0.2 秒后出现第一步",
        "兄弟节点扩展，每秒生成的词元数（一次批量调用 对比 k 次单独调用）：",
        "  k=8：80.0 对比 20.0 -> x4.0",
        "  [达标] 批量加速 x4.0（目标 >= 3.0）",
        "树的重绘（布局 + 图 + JSON），毫秒：",
        "    2000 个节点：160.0  [未达标] 目标 <= 150.0",
        "峰值常驻内存：300.0 MB"]
    assert "[ok ] batched speedup x4.0" in format_report(r)          # English outside the block


def test_collect_pairs_refuses_a_folder_as_out_before_collecting_and_train_ppm_an_empty_file_in_chinese(tmp_path):
    ran = cli("collect-pairs", "--problems", "4", "--out", str(tmp_path), lang="zh_CN.UTF-8")
    assert ran.returncode == 2 and ran.stdout == ""
    assert f"--out 必须是文件路径，收到的是文件夹 {tmp_path}" in ran.stderr and "收集偏好对" not in ran.stderr
    assert_chinese(ran.stderr)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    ran = cli("train-ppm", "--pairs", str(empty), "--out", str(tmp_path / "ppm"), lang="zh_CN.UTF-8")
    assert ran.returncode == 2 and "没有可训练的偏好对" in ran.stderr
    assert_chinese(ran.stderr)


def test_train_ppm_refuses_a_server_before_collecting_and_says_how_in_chinese(tmp_path):
    # nothing listens on port 9: the refusal must come before any connection or collection
    ran = cli("train-ppm", "--pairs-from", "4", "--server", "http://127.0.0.1:9", "--out", str(tmp_path / "ppm"),
              lang="zh_CN.UTF-8")
    assert ran.returncode == 2 and "服务器不提供权重" in ran.stderr and "collect-pairs --server" in ran.stderr
    assert "标准答案奖励" not in ran.stderr and not (tmp_path / "ppm").exists()     # no collection bar
    commands = ("collect-pairs --server URL --out FILE", "train-ppm --pairs FILE --model")   # typed as they are
    assert_chinese(ran.stderr.replace(commands[0], " ").replace(commands[1], " "))
