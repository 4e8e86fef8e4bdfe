"""`thoughtscope bench` on its quick workload, and the tree figure staying bounded on big trees."""

import json

from app.tree_figure import tree_figure, visible_nodes
from engine import cli
from engine.evaluation.bench import synthetic_tree

KEYS = {"computed_per_unique", "computed_per_unique_naive", "batched_speedup", "redraw_ms", "rollout_s",
        "peak_rss_mb"}


def test_bench_quick_json_has_the_issue_keys_and_counts_each_tree_token_once(capsys):
    assert cli.main(["bench", "--quick", "--json", "--threads", "1"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert KEYS <= set(r)
    assert set(r["redraw_ms"]) == {"50", "200"} and all(v > 0 for v in r["redraw_ms"].values())
    assert r["same_tree"] is True                       # the cache changes no token
    assert r["computed_per_unique"] <= 1.05 < r["computed_per_unique_naive"]
    # same tree, same prompts: every prompt token the naive run computed was computed or reused
    assert r["tokens"]["computed"] + r["tokens"]["reused"] == r["tokens"]["computed_naive"]
    assert r["batched_speedup"] > 0 and r["rollout_s"] > 0 and r["peak_rss_mb"] > 0


def sample_result(same_tree: bool = True) -> dict:
    """A bench result as `run_bench` returns it, made up, for the text report's tests (here and
    tests/test_cli_i18n_ppm.py): one target missed (the 2000-node redraw)."""
    from engine.evaluation.bench import TARGETS
    return {"model": "m", "workload": {"rollouts": 2, "children": 3}, "same_tree": same_tree,
            "computed_per_unique": 1.0, "computed_per_unique_naive": 6.0,
            "tokens": {"nodes": 7, "unique": 100, "computed": 100, "reused": 500},
            "rollout_s": 0.5, "rollout_s_naive": 1.5, "first_node_s": 0.2,
            "batching": {"8": {"batched_tok_s": 80.0, "unbatched_tok_s": 20.0, "speedup": 4.0}},
            "batched_speedup": 4.0, "redraw_ms": {"2000": 160.0}, "peak_rss_mb": 300.0, "targets": TARGETS}


def test_bench_text_report_names_each_target(capsys):
    from engine.cli.bench import format_report
    text = format_report(sample_result())
    assert "[ok ] computed / unique, cached: 1.0" in text and "[ok ] batched speedup x4.0" in text
    assert "[MISS] target <= 150.0" in text


def test_a_10000_node_tree_draws_a_bounded_figure_that_accounts_for_every_node():
    tree = synthetic_tree(10_000)
    path = tree.path_to(9_999)
    keep, hidden = visible_nodes(tree, path, 2500)
    assert len(keep) <= 2500
    assert all(tree[n].parent in keep for n in keep if n != 0)          # closed under parents
    assert len(keep) + sum(hidden.values()) == len(tree)                # every other node is counted once
    fig = tree_figure(tree, highlight=path, max_nodes=2500)
    nodes, squares = fig.data[2], fig.data[3]
    assert len(nodes.x) == len(keep) and set(nodes.customdata) == keep
    assert sorted(int(t[1:]) for t in squares.text) == sorted(hidden.values())
    assert set(path) <= keep                                            # the highlighted path is drawn
    small = synthetic_tree(300)
    assert len(tree_figure(small).data) == 3 and len(tree_figure(small).data[2].x) == 300


def test_the_rstar_action_figure_is_bounded_the_same_way():
    tree = synthetic_tree(6_000, actions=("A1", "A2", "A3", "A4", "A5"))
    path = tree.path_to(5_999)
    keep, hidden = visible_nodes(tree, path, 2500)
    fig = tree_figure(tree, highlight=path, colour_by="action", max_nodes=2500)
    markers = [t for t in fig.data if t.mode == "markers"]
    drawn = {i for t in markers for i in t.customdata}
    assert drawn == keep and sum(len(t.x) for t in markers) == len(keep)
    squares = next(t for t in fig.data if t.name == "not drawn")
    assert sorted(int(t[1:]) for t in squares.text) == sorted(hidden.values())
    assert "2500 of 6000 nodes drawn" in fig.layout.title.text
    assert {t.name.split()[0] for t in markers} == {"question", "A1", "A2", "A3", "A4", "A5"}
    small = tree_figure(synthetic_tree(300, actions=("A1", "A3")), colour_by="action")
    assert not any(t.name == "not drawn" for t in small.data) and not small.layout.title.text
