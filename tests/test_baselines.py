"""Baselines' trees hold what they vote on (engine/search/baselines.py), on a scripted backend."""

from engine import events as E
from engine.search import baselines as B
from engine.tree import Tree
from scripted import ScriptBackend, word_generation

LONG = "".join(f"Step {k}: {k} + 1 = {k + 1}\n" for k in range(1, 12)) + "The answer is 12.\n"


class LongSolution(ScriptBackend):
    """Every solution is 12 lines: longer than the default max_depth (8)."""

    def reply(self, i, prompt, prompts, sampling, stop, seed):
        return word_generation(LONG[len("Step 1:"):], prompt)


def test_a_solution_longer_than_max_depth_keeps_its_answer_in_the_tree():
    events = list(B.run_greedy("What is 1 + 11?", LongSolution(), config=B.BaselineConfig(max_depth=8), gold="12"))
    tree = Tree.fold(events)
    last = tree[tree.final.path[-1]]
    assert tree.final.answer == "12" and tree.final.correct
    assert len(tree.final.path) == 9 and last.depth == 8               # the path ends in the tree, not at [0]
    assert last.terminal and last.answer == "12" and last.text.endswith("The answer is 12.\n")
    joined = "".join(tree[n].text for n in tree.final.path[1:])
    assert joined.replace(" ", "") == LONG.replace(" ", "")              # nothing of the solution lost
    assert max(n.depth for n in tree.nodes) == 8


def test_self_consistency_votes_what_its_leaves_say():
    events = list(B.run_self_consistency("What is 1 + 11?", LongSolution(), config=B.BaselineConfig(samples=3),
                                         gold="12"))
    tree = Tree.fold(events)
    assert tree.final.answer == "12" and tree[tree.final.path[-1]].answer == "12"
    assert sum(1 for e in events if isinstance(e, E.Backprop)) == 3
