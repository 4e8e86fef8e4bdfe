"""The order/wording probe of the embedded model: every telling is the same problem."""

import random
import re

import pytest

from engine.demo_model import problems as P
from engine.demo_model.probe import probe, retell, reword, variants


def _numbers(text: str) -> list[int]:
    return sorted(int(n) for n in re.findall(r"\d+", text))


def test_a_retelling_keeps_every_sentence_and_moves_only_events():
    rng = random.Random(0)
    moved = 0
    for p in P.generate("hard", 200, seed=12):
        told = retell(p, p.steps)
        assert told == " ".join(list(p.conditions) + [p.final_question])
        other = retell(p, P.reorder(p, rng))
        assert sorted(other.split(". ")) == sorted(told.split(". "))   # same sentences, other order
        assert other.split(". ")[0] == told.split(". ")[0]              # the opening stays first
        moved += other != told
    assert moved > 60


def test_a_rewording_changes_the_name_and_object_but_no_number():
    rng = random.Random(1)
    for p in P.generate("hard", 100, seed=13):
        told, other = retell(p, p.steps), reword(p, rng)
        assert other != told and _numbers(other) == _numbers(told)
        assert len(other.split(". ")) == len(told.split(". "))


def test_bad_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="kind must be"):
        variants(P.generate("easy", 1, seed=0)[0], "colours", 2, random.Random(0))


@pytest.mark.slow
def test_the_probe_runs_the_embedded_model_and_reports_shares(default_backend):
    out = probe(default_backend, P.generate("medium", 3, seed=14), "orders", 2, seed=0)
    assert set(out) == {"told", "each", "vote", "problems_told_more_ways"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
