"""The problem generator: gold answers are right, tiers differ, held-out is disjoint."""

import random
import statistics

import pytest

from engine.demo_model import formats
from engine.demo_model import problems as P
from engine.demo_model.train import build_corpus
from engine.evaluation.evaluate import HELDOUT
from engine.steps import extract_answer, merged_claim, split_steps, step_claims

APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


@pytest.mark.parametrize("tier", P.TIERS)
def test_every_step_is_right_and_chains_to_the_answer(tier):
    for p in P.generate(tier, 300, seed=7):
        value = p.steps[0].left
        for s in p.steps:
            assert s.left == value                      # each step continues from the last
            assert APPLY[s.op](s.left, s.right) == s.result
            assert s.result > 0 and s.result == int(s.result)
            value = s.result
        assert p.answer == value


@pytest.mark.parametrize("tier", P.TIERS)
def test_code_steps_execute_to_the_stated_values(tier):
    for p in P.generate(tier, 100, seed=3):
        env: dict = {}
        for k, s in enumerate(p.steps, 1):
            exec(s.code, {}, env)
            assert env[f"x{k}"] == s.result


def test_numbers_in_the_question_are_the_step_operands():
    for p in P.generate("hard", 100, seed=5):
        for s in p.steps:
            assert str(s.right) in p.question


def test_tiers_differ_in_steps_numbers_and_distractors():
    stats = {}
    for tier in P.TIERS:
        ps = P.generate(tier, 300, seed=1)
        stats[tier] = (statistics.mean(len(p.steps) for p in ps),
                       statistics.mean(max(s.result for s in p.steps) for p in ps),
                       statistics.mean(len(p.conditions) - len(p.steps) for p in ps))
    (e_steps, e_max, e_extra), (m_steps, m_max, _), (h_steps, h_max, h_extra) = (
        stats["easy"], stats["medium"], stats["hard"])
    assert e_steps < m_steps < h_steps
    assert e_max < m_max < h_max
    assert h_extra > e_extra                             # hard has distractor sentences
    assert all(1 <= len(p.steps) <= 2 for p in P.generate("easy", 200, seed=2))
    assert all(4 <= len(p.steps) <= 5 for p in P.generate("hard", 200, seed=2))


def test_same_seed_same_problems_other_seed_other_problems():
    assert P.generate("medium", 20, seed=11) == P.generate("medium", 20, seed=11)
    assert P.generate("medium", 20, seed=11) != P.generate("medium", 20, seed=12)


def test_heldout_file_has_200_per_tier_and_is_disjoint_from_training():
    held = P.load_problems(HELDOUT)
    for tier in P.TIERS:
        assert sum(p.tier == tier for p in held) >= 200
    held_q = {p.question for p in held}
    assert len(held_q) == len(held)
    # the training corpus skips held-out questions: plant one and check it is dropped
    corpus = build_corpus(3000, seed=0, heldout_questions=held_q)
    assert not held_q & {c[0].removeprefix(formats.QUESTION_PREFIX).strip() for c in corpus}


def test_the_heldout_file_is_what_the_generator_writes(tmp_path):
    out = tmp_path / "h.jsonl"
    P.write_heldout(out)
    assert out.read_text() == HELDOUT.read_text()


@pytest.mark.parametrize("fmt", P.FORMATS)
def test_every_format_states_the_gold_answer_and_correct_arithmetic(fmt):
    rng = random.Random(0)
    for p in P.generate("hard", 50, seed=9):
        prompt, completion = P.render(p, fmt, rng)
        assert prompt.startswith(formats.QUESTION_PREFIX) and p.question in prompt
        assert extract_answer(completion) is not None
        assert int(extract_answer(completion.splitlines()[-1])) == p.answer
        claims = [c for line in split_steps(completion) for c in step_claims(line)]
        assert claims and all(APPLY[op](a, b) == c for a, op, b, c in claims)


def test_rstar_format_follows_action_legality():
    # after a one-step thought ("Step k:") no sub-question may follow
    rng = random.Random(1)
    seen_mixed = False
    for p in P.generate("hard", 200, seed=4):
        _, completion = P.render(p, "rstar", rng)
        kinds = ["step" if l.startswith("Step") else "sub" if l.startswith("Sub-question") else "other"
                 for l in completion.splitlines()]
        if "step" in kinds and "sub" in kinds:
            seen_mixed = True
            assert max(i for i, k in enumerate(kinds) if k == "sub") < kinds.index("step")
    assert seen_mixed


def test_bad_tier_or_format_is_a_clear_error():
    with pytest.raises(ValueError, match="tier"):
        P.generate("impossible", 1, seed=0)
    with pytest.raises(ValueError, match="format"):
        P.render(P.generate("easy", 1, seed=0)[0], "poem")


@pytest.mark.parametrize("left,op,right", [(478, "+", 356), (478, "-", 356), (478, "+", 56),
                                           (123, "*", 4), (7, "*", 23), (246, "/", 3),
                                           (999, "/", 9), (96, "/", 8)])
def test_a_worked_step_is_right_at_every_equals_sign(left, op, right):
    result = int(APPLY[op](left, right))
    sides = formats.arithmetic(left, op, right, result, split=True).split(" = ")
    assert len(sides) == 4                                   # a op b = split = partial = c
    assert all(eval(s.replace("/", "//")) == result for s in sides)   # exact divisions only


@pytest.mark.parametrize("left,op,right", [(478, "+", 7), (478, "+", 300), (7, "*", 20), (240, "/", 3)])
def test_steps_without_an_easier_split_are_written_directly(left, op, right):
    assert formats.split_work(left, op, right) is None
    assert formats.arithmetic(left, op, right, int(APPLY[op](left, right)), split=True).count("=") == 1


def test_about_split_share_of_splittable_steps_are_worked():
    rng = random.Random(3)
    lines = [l for p in P.generate("hard", 300, seed=5) for l in P.render(p, "steps", rng, 0.4)[1].splitlines()
             if l.startswith("Step") and formats.split_work(*step_claims(l)[0][:3])]
    share = sum(l.count("=") > 1 for l in lines) / len(lines)
    assert abs(share - 0.4) < 0.05


def test_the_default_recipe_writes_every_step_directly():
    rng = random.Random(3)
    for p in P.generate("hard", 50, seed=5):
        assert all(l.count("=") <= 1 for l in P.render(p, "steps", rng)[1].splitlines())


def test_reordered_solutions_take_every_event_once_and_reach_the_answer():
    rng = random.Random(4)
    moved = 0
    for p in P.generate("hard", 300, seed=6):
        steps = P.reorder(p, rng)
        assert sorted((s.op, s.right) for s in steps) == sorted((s.op, s.right) for s in p.steps)
        assert steps[-1].result == p.answer and steps[0].left == p.steps[0].left
        assert all(b.left == a.result for a, b in zip(steps, steps[1:]))
        assert all(APPLY[s.op](s.left, s.right) == s.result and 1 <= s.result <= 999 for s in steps)
        if p.steps[0].subquestion.endswith(" buy?"):
            assert steps[0] == p.steps[0]                      # the opening product stays first
        moved += [(s.op, s.right) for s in steps] != [(s.op, s.right) for s in p.steps]
    assert 0.4 < moved / 300 < 0.9                             # most hard problems have another order


def test_reorder_share_applies_to_steps_and_code_only():
    p = next(q for q in P.generate("hard", 50, seed=6)
             if any(P.reorder(q, random.Random(i)) != P.reorder(q, random.Random(0)) for i in range(1, 5)))
    outs = {P.render(p, "steps", random.Random(i), reorder_share=1.0)[1] for i in range(30)}
    assert len(outs) > 1 and all(o.rstrip().endswith(f"The answer is {p.answer}.") for o in outs)
    assert len({P.render(p, "code", random.Random(i), reorder_share=1.0)[1] for i in range(30)}) > 1
    for i in range(10):      # rStar's sub-questions follow the story: no reorder, no extra random draw
        assert P.render(p, "rstar", random.Random(i), reorder_share=1.0) == P.render(p, "rstar", random.Random(i))


def test_each_event_tag_is_the_storys_own_words_around_its_operand():
    for p in P.generate("hard", 200, seed=8):
        for s in p.steps:
            if s.subquestion.endswith(" buy?"):
                assert s.event == ""                           # the opening product has no event
            else:
                assert s.event in p.question and str(s.right) in s.event.split()


def test_named_steps_lead_with_the_event_and_still_read_as_their_arithmetic():
    rng = random.Random(3)
    for p in P.generate("hard", 40, seed=9):
        events = sorted((s.op, s.right, s.event) for s in p.steps)
        for fmt, share in (("steps", 0.8), ("rstar", 0.0)):
            text = P.render(p, fmt, rng, reorder_share=share, name_events=True)[1]
            lines = [line for line in split_steps(text) if line.startswith("Step ")]
            claims = [step_claims(line) for line in lines]
            assert all(len(c) == 1 for c in claims)            # the tag's number is not read as arithmetic
            written = []
            for line, [(a, op, b, r)] in zip(lines, claims):
                assert APPLY[op](a, b) == r
                body = line.split(": ", 1)[1]
                written.append((op, b, body.rsplit(", ", 1)[0] if ", " in body else ""))
            if fmt == "steps":                                 # every event once, in some order
                assert sorted(written) == events
            elif lines:                                        # rStar: the told order's last steps
                assert written == [(s.op, s.right, s.event) for s in p.steps[-len(lines):]]
            assert extract_answer(text) == str(p.answer)


def test_naming_events_is_off_by_default_and_draws_no_random_number():
    for p in P.generate("hard", 20, seed=10):
        plain = P.render(p, "steps", random.Random(1))[1]
        assert all(step_claims(line) and line.split(": ", 1)[1][0].isdigit() for line in plain.splitlines()[:-1])
        rng_a, rng_b = random.Random(2), random.Random(2)
        P.render(p, "rstar", rng_a, name_events=True)
        P.render(p, "rstar", rng_b)
        assert rng_a.random() == rng_b.random()


def test_hard_steps_changes_only_the_hard_tiers_event_count():
    from engine.demo_model.train import tier_specs
    specs = tier_specs([6, 7])
    assert specs["easy"] == P.TIER_SPECS["easy"] and specs["hard"].max_value == P.TIER_SPECS["hard"].max_value
    rng = random.Random(0)
    counts = {len(P.generate_problem(rng, "hard", spec=specs["hard"]).steps) for _ in range(60)}
    assert counts == {6, 7}
    assert tier_specs(None) == P.TIER_SPECS
    with pytest.raises(SystemExit, match="--hard-steps: events must be"):
        tier_specs([5, 3])


def test_merged_steps_take_two_events_in_one_expression_that_python_reads_right():
    rng = random.Random(5)
    merged = 0
    for p in P.generate("hard", 200, seed=11):
        text = P.render(p, "steps", rng, reorder_share=0.8, name_events=True, merge_share=0.65)[1]
        lines = text.splitlines()
        used, value = [], p.steps[0].left
        for line in lines[:-1]:
            body = line.split(": ", 1)[1]
            tags, expr = body.rsplit(", ", 1) if ", " in body else ("", body)
            lhs, rhs = expr.rsplit(" = ", 1)
            assert eval(lhs) == int(rhs)                       # brackets where precedence needs them
            assert lhs.lstrip("(").startswith(str(value))      # continues from the last value
            value = int(rhs)
            if " and " in tags:
                merged += 1
                used += tags.split(" and ")
            elif tags:
                used.append(tags)
        assert sorted(used) == sorted(s.event for s in p.steps if s.event)   # every event once
        assert value == p.answer and lines[-1] == f"The answer is {p.answer}."
    assert merged > 200                                        # most hard solutions merge something


def test_merging_is_off_by_default_applies_to_plain_steps_only_and_never_to_the_product():
    for p in P.generate("hard", 30, seed=12):
        for fmt in ("rstar", "code"):
            assert P.render(p, fmt, random.Random(1), merge_share=1.0) == P.render(p, fmt, random.Random(1))
        assert P.render(p, "steps", random.Random(1)) == P.render(p, "steps", random.Random(1), merge_share=0.0)
        groups = P.merge_groups(p.steps, random.Random(2), 1.0)
        if p.steps[0].subquestion.endswith(" buy?"):
            assert groups[0] == (p.steps[0],)
        assert [s for g in groups for s in g] == list(p.steps)
        assert all(len(g) <= 2 for g in groups)


def test_merged_arithmetic_brackets_only_an_additive_head_before_a_product():
    assert formats.merged_arithmetic(298, ("-", 230), ("+", 40), 108) == "298 - 230 + 40 = 108"
    assert formats.merged_arithmetic(298, ("-", 230), ("*", 3), 204) == "(298 - 230) * 3 = 204"
    assert formats.merged_arithmetic(40, ("*", 3), ("-", 20), 100) == "40 * 3 - 20 = 100"
    assert formats.merged_step_line(2, 40, ("*", 3), ("/", 4), 30, ("grows to 3 times", "among 4 children")) == \
        "Step 2: grows to 3 times and among 4 children, 40 * 3 / 4 = 30"


def test_name_share_mixes_named_and_plain_solutions_and_leaves_other_formats_alone():
    rng = random.Random(6)
    named = 0
    problems = P.generate("hard", 300, seed=13)
    for p in problems:
        text = P.render(p, "steps", rng, reorder_share=0.8, name_share=0.45)[1]
        lines = text.splitlines()[:-1]
        if p.steps[0].subquestion.endswith(" buy?"):
            lines = lines[1:]                                  # the opening product is never named
        tagged = [not line.split(": ", 1)[1][0].isdigit() for line in lines]
        assert all(tagged) or not any(tagged)                  # one style per solution
        named += all(tagged)
        assert extract_answer(text) == str(p.answer)
    assert 0.35 < named / 300 < 0.55
    p = problems[0]
    for fmt in ("rstar", "code"):                              # only plain-steps solutions draw
        assert P.render(p, fmt, random.Random(1), name_share=0.45) == P.render(p, fmt, random.Random(1))
    assert P.render(p, "steps", random.Random(1), name_share=None) == P.render(p, "steps", random.Random(1))


def test_with_name_share_only_plain_solutions_merge():
    rng = random.Random(7)
    styles = set()
    for p in P.generate("hard", 100, seed=14):
        lines = P.render(p, "steps", rng, reorder_share=0.8, name_events=True, merge_share=1.0, name_share=0.45)[1].splitlines()[:-1]
        bodies = [line.split(": ", 1)[1] for line in lines]
        named = any(not b.lstrip("(")[0].isdigit() for b in bodies)
        merged = any(merged_claim(line) for line in lines)
        styles.add((named, merged))
        if named:
            assert not merged and len(lines) == len(p.steps)   # careful: one event a step
    assert styles == {(True, False), (False, True)}
