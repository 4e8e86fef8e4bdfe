"""LECO: the three step scores on hand-written probabilities, the cut rule, the stopping rule,
step splitting that does not depend on the tokenizer, and real runs on the embedded model."""

import json
import math
import os
import subprocess
import sys

import pytest

from engine import events as E
from engine.demo_model.problems import Problem, Step as TrueStep
from engine.evaluation.leco import first_wrong_step, leco_result, summarise
from engine.models.base import Generation, ModelInfo, TokenLogprob
from engine.scoring import leco as S
from engine.search import METHODS
from engine.search.leco import LECOConfig, run, step_probs
from engine.steps import split_steps
from engine.tree import Tree

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"


# ---- the scores, worked by hand ---------------------------------------------------------------

def test_average_score_is_the_mean_probability():
    p = [1.0, 0.5, 0.25, 0.25]
    assert S.average_score(p) == pytest.approx(2.0 / 4)
    assert p == [1.0, 0.5, 0.25, 0.25]                 # input unchanged


def test_divergence_is_zero_when_every_token_is_equally_sure():
    assert S.kl_to_uniform([0.9, 0.9, 0.9]) == pytest.approx(0.0, abs=1e-12)
    assert S.divergence_score([0.9, 0.9, 0.9]) == pytest.approx(0.0, abs=1e-12)


def test_divergence_of_an_uneven_step_worked_by_hand():
    # p = (0.5, 0.25, 0.25) sums to 1 already, so P = p; U = 1/3 each
    # KL = 0.5 ln(0.5·3) + 2 · 0.25 ln(0.25·3) = 0.5 ln 1.5 + 0.5 ln 0.75
    kl = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    assert kl == pytest.approx(0.0588915, abs=1e-6)
    assert S.kl_to_uniform([0.5, 0.25, 0.25]) == pytest.approx(kl)
    # ln(KL^(1/3) + 1) = ln(0.389... + 1)
    assert S.divergence_score([0.5, 0.25, 0.25]) == pytest.approx(math.log(kl ** (1 / 3) + 1))
    assert S.divergence_score([0.5, 0.25, 0.25]) == pytest.approx(0.32864, abs=1e-4)
    # scaling every probability leaves P, so the divergence, unchanged
    assert S.divergence_score([0.2, 0.1, 0.1]) == pytest.approx(S.divergence_score([0.5, 0.25, 0.25]))


def test_transition_averages_the_first_five_tokens():
    p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.01, 0.01]
    assert S.transition_score(p) == pytest.approx((0.9 + 0.8 + 0.7 + 0.6 + 0.5) / 5)
    assert S.transition_score([0.4, 0.2]) == pytest.approx(0.3)        # a short step: all it has
    assert S.transition_score(p, n=1) == pytest.approx(0.9)


def test_confidence_adds_average_and_transition_and_subtracts_divergence():
    p = [1.0, 0.5, 0.25, 0.25, 1.0, 1.0]
    s = S.score_probs(p)
    avg = 4.0 / 6
    trans = (1.0 + 0.5 + 0.25 + 0.25 + 1.0) / 5
    P = [x / 4.0 for x in p]
    kl = sum(q * math.log(q * 6) for q in P)
    div = math.log(kl ** (1 / 3) + 1)
    assert (s.average, s.transition, s.divergence) == pytest.approx((avg, trans, div))
    assert s.confidence == pytest.approx(avg + trans - div)


def test_top5_probability_renormalises_over_the_top_five():
    lp = math.log
    top = [("a", lp(0.4)), ("b", lp(0.2)), ("c", lp(0.1)), ("d", lp(0.05)), ("e", lp(0.05)), ("f", lp(0.01))]
    assert S.token_prob(lp(0.4), top, "top5") == pytest.approx(0.4 / 0.8)      # the 6th is ignored
    assert S.token_prob(lp(0.4), top, "full") == pytest.approx(0.4)
    # a sampled token outside the top 5 joins the denominator
    assert S.token_prob(lp(0.02), top[:5], "top5") == pytest.approx(0.02 / 0.82)
    with pytest.raises(ValueError, match="token_probs"):
        S.token_prob(0.0, top, "top3")


# ---- steps, labels, candidates, the cut --------------------------------------------------------

def test_segmentation_keeps_labels_and_delimiters_out_of_the_scores():
    toks = [" 2", " +", " 3", " = 5", "\n", "Step", " 2", ":", " 5", " * 2 = 10", "\n", "The", " answer", " is",
            " 10", ".", "\n"]
    spans = S.segment_steps(toks, prefix="Step 1:")
    assert [s.text for s in spans] == split_steps("Step 1:" + "".join(toks))
    assert [(s.start, s.end) for s in spans] == [(0, 5), (5, 11), (11, 17)]
    assert spans[0].scored == (0, 1, 2, 3)            # the forced label is text, not tokens
    assert spans[1].scored == (8, 9)                  # "Step", " 2", ":" are the label
    assert spans[2].scored == (11, 12, 13, 14, 15)    # no label: every token but the newline


def test_a_token_that_holds_the_delimiter_ends_the_step_and_opens_the_next():
    spans = S.segment_steps([" 4", ".\nStep", " 2", ": 7", "\n"], prefix="Step 1:")
    assert [s.text for s in spans] == ["Step 1: 4.", "Step 2: 7"]
    assert spans[0].scored == (0,) and spans[1].scored == (3,)      # ": 7" carries content past the label


def test_step_probs_reads_node_rows_and_skips_the_label():
    lp = math.log
    rows = [[1, "Step", lp(0.99), []], [2, " 2", lp(0.98), []], [3, ":", lp(0.97), []],
            [4, " 4", lp(0.5), [[" 4", lp(0.5)], [" 5", lp(0.3)]]], [5, "\n", lp(0.9), []]]
    assert step_probs("Step 2: 4\n", rows, "full") == pytest.approx([0.5])
    assert step_probs("Step 2: 4\n", rows, "top5") == pytest.approx([0.5 / 0.8])
    forced = [[4, " 4", lp(0.5), []], [5, "\n", lp(0.9), []]]
    assert step_probs("Step 1: 4\n", forced, "full") == pytest.approx([0.5])   # "Step 1:" was written by us
    assert step_probs("Step 3:\n", rows[:3] + rows[4:], "full") is None


def test_answer_and_restating_lines_are_not_candidates():
    assert S.not_candidate_reason("The answer is 37.") == "states the answer"
    assert S.not_candidate_reason("Answer 2: 9 - 2 = 7. The answer is 7.") == "states the answer"
    assert S.not_candidate_reason("Question: Mia has 23 apples. How many?") == "restates the question"
    assert S.not_candidate_reason("Rephrased: Condition 1: Mia has 23 apples.") == "restates the question"
    assert S.not_candidate_reason("Step 2: 23 + 14 = 37") is None


def test_the_cut_is_the_earliest_of_the_two_least_confident_candidates():
    conf = [1.9, 1.2, 1.5, 1.1, 1.95]
    assert S.pick_cut(conf, [True] * 5) == (1, [1, 3])             # lowest two: steps 3 and 1 -> 1
    assert S.pick_cut(conf, [True, False, True, True, True]) == (2, [2, 3])
    assert S.pick_cut(conf, [True] * 5, lowest=1) == (3, [3])
    assert S.pick_cut([1.0, 1.0, 1.0], [True] * 3) == (0, [0, 1])  # ties: earlier first
    assert S.pick_cut(conf, [False] * 5) == (None, [])


def test_leco_vote_weights_the_first_answer_one_and_a_half():
    assert S.leco_vote(["7", "9", "9"]) == "9"          # two rethinks agree: 2 > 1.5
    assert S.leco_vote(["7", "9", "8", "6"]) == "7"     # all differ: the first answer
    assert S.leco_vote(["7", "7"]) == "7"
    assert S.leco_vote([None, "4"]) == "4" and S.leco_vote([None, None]) is None


# ---- the loop on a scripted backend (pure search logic) ---------------------------------------

class ScriptedBackend:
    """Returns the scripted solutions in order; the digit after '=' is unsure (p = 0.3)."""

    info = ModelInfo("scripted", "-", 0, "cpu", "float32", 100, 4096, False, "none")

    def __init__(self, solutions):
        self.solutions = list(solutions)
        self.prompts = []

    def render_prompt(self, question):
        return f"Question: {question}\n"

    def solution_prefix(self):
        return "Step 1:"

    def generate(self, prompts, *, sampling, stop, max_new_tokens, seed, should_stop=None):
        self.prompts += prompts
        text = self.solutions.pop(0)
        toks, unsure = [], False
        for piece in text.replace("\n", " \n ").split(" "):
            if not piece:
                continue
            tok = piece if piece == "\n" else " " + piece
            p = 0.3 if unsure else 0.99
            unsure = piece == "="
            toks.append(TokenLogprob(0, tok, math.log(p), ((tok, math.log(p)), ("x", math.log(0.01)))))
        return [Generation("".join(t.token for t in toks), tuple(toks), "eos", prompt_tokens=5)]


def _events(backend, **cfg):
    return list(run(QUESTION, backend, config=LECOConfig(**cfg), seed=0, gold="37"))


def test_the_loop_stops_when_the_answer_repeats():
    b = ScriptedBackend([" 23 + 14 = 36\nThe answer is 36.\n",
                         " 23 + 14 = 37\nThe answer is 37.\n",
                         " 23 + 14 = 37\nThe answer is 37.\n",
                         " never used\n"])
    evs = _events(b)
    answers = [e for e in evs if isinstance(e, E.RoundAnswer)]
    assert [a.answer for a in answers] == ["36", "37", "37"]
    assert [a.stop for a in answers] == [False, False, True] and answers[-1].reason == "answer unchanged"
    assert len(b.solutions) == 1                                      # no fourth call
    final = next(e for e in evs if isinstance(e, E.FinalAnswer))
    assert final.answer == "37" and final.correct                     # 2 votes beat 1.5
    # one step only: the cut is at step 1, nothing kept, the rethink starts from the prompt again
    assert b.prompts[1] == b.prompts[0] == "Question: " + QUESTION + "\nStep 1:"


def test_two_rounds_without_an_answer_are_not_an_unchanged_answer():
    # None == None once ended LECO after one rethink; a round with no answer line gets another rethink
    b = ScriptedBackend([" 23 + 14 = 36\n", " 23 + 14 = 35\n", " 23 + 14 = 37\nThe answer is 37.\n",
                         " 23 + 14 = 37\nThe answer is 37.\n"])
    answers = [e for e in _events(b, max_rounds=3) if isinstance(e, E.RoundAnswer)]
    assert [a.answer for a in answers] == [None, None, "37", "37"]
    assert [a.stop for a in answers] == [False, False, False, True] and answers[-1].reason == "answer unchanged"


def test_the_loop_stops_after_max_rounds():
    b = ScriptedBackend([f" 23 + 14 = {v}\nThe answer is {v}.\n" for v in (30, 31, 32, 33, 34, 35)])
    evs = _events(b, max_rounds=3)
    answers = [e for e in evs if isinstance(e, E.RoundAnswer)]
    assert [a.answer for a in answers] == ["30", "31", "32", "33"]
    assert answers[-1].stop and answers[-1].reason == "max rounds"
    assert next(e for e in evs if isinstance(e, E.FinalAnswer)).answer == "30"


def test_a_rethink_keeps_the_steps_before_the_cut_and_only_new_steps_are_cut():
    sure = " 10 + 10 =20\n"                        # no lone '=': nothing unsure in step 1
    b = ScriptedBackend([sure + "Step 2: 20 + 3 = 24\nThe answer is 24.\n",
                         " 20 + 3 = 23\nThe answer is 23.\n",
                         " 20 + 3 = 23\nThe answer is 23.\n"])
    evs = _events(b, lowest=1)
    cuts = [e for e in evs if isinstance(e, E.StepCut)]
    scores = [e for e in evs if isinstance(e, E.StepScores)]
    assert cuts[0].index == 1 and len(cuts[0].kept) == 1                # step 2 is the unsure one
    assert b.prompts[1] == b.prompts[0] + sure                          # step 1 kept, step 2 redone whole
    cont = next(e for e in evs if isinstance(e, E.Continuation))
    assert cont.parent == cuts[0].kept[-1] and cont.text.startswith(" 20 + 3 = 23")
    kept_row = scores[1].steps[0]
    assert kept_row["new"] is False and kept_row["candidate"] is False   # kept steps are never cut again
    assert cuts[1].index >= cuts[0].index


def test_with_two_lowest_a_sure_earlier_step_is_cut_first():
    # the official rule: the earliest of the two least confident, even when only one is unsure
    b = ScriptedBackend([" 10 + 10 =20\nStep 2: 20 + 3 = 24\nThe answer is 24.\n",
                         " 10 + 10 =20\nStep 2: 20 + 3 = 24\nThe answer is 24.\n"])
    cut = next(e for e in _events(b) if isinstance(e, E.StepCut))
    assert cut.index == 0 and cut.kept == [] and len(cut.lowest) == 2


def test_bad_config_names_the_field():
    for field, value in [("max_rounds", 0), ("lowest", 0), ("token_probs", "top3"), ("transition_tokens", 0),
                         ("temperature", -1.0)]:
        with pytest.raises(ValueError, match=field):
            LECOConfig(**{field: value})


# ---- tokenizer independence and real runs -----------------------------------------------------

SOLUTION = "Step 1: 245 - 214 = 31\nStep 2: 31 * 6 = 186\nStep 3: 186 / 3 = 62\nThe answer is 62.\n"


def test_step_splitting_does_not_depend_on_the_tokenizer(default_backend):
    # The embedded model, the tiny Qwen2/Llama fixtures and SmolLM2 all split digits and give
    # this text the same 58 tokens, so the other tokenisations are written out: one character
    # per token, and words with every space and newline a token of its own.
    import re
    real = [t.token for t in default_backend.score(default_backend.render_prompt(QUESTION), SOLUTION)]
    tokenisations = {"embedded": real, "chars": list(SOLUTION), "words": re.findall(r"\S+|\s", SOLUTION)}
    assert len({len(t) for t in tokenisations.values()}) == 3
    want = ["245 - 214 = 31", "31 * 6 = 186", "186 / 3 = 62", "The answer is 62."]
    for name, texts in tokenisations.items():
        assert "".join(texts) == SOLUTION
        spans = S.segment_steps(texts)
        assert [s.text for s in spans] == split_steps(SOLUTION), name
        assert ["".join(texts[i] for i in s.scored).strip() for s in spans] == want, name
        assert spans[-1].end == len(texts) and all(a.end == b.start for a, b in zip(spans, spans[1:]))


def test_a_token_gluing_text_to_the_newline_is_not_scored():
    # as in the official code: a token that holds the delimiter ends its step unscored
    texts = ["Step", " 1", ":", " 2", " + 2", " = 4\n", "The", " answer", " is", " 4", ".\n"]
    spans = S.segment_steps(texts)
    assert [s.text for s in spans] == ["Step 1: 2 + 2 = 4", "The answer is 4."]
    assert spans[0].scored == (3, 4) and spans[1].scored == (6, 7, 8, 9)


def test_same_seed_same_events_and_they_survive_json(default_backend):
    cfg = LECOConfig(max_rounds=2)
    a = [e.dumps() for e in run(QUESTION, default_backend, config=cfg, seed=3, gold="37")]
    b = [e.dumps() for e in run(QUESTION, default_backend, config=cfg, seed=3, gold="37")]
    assert a == b
    assert [E.loads(x).dumps() for x in a] == a


def test_a_real_leco_run_on_a_hard_problem(default_backend):
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    problem = load_problems(HELDOUT, "hard")[0]
    evs = list(METHODS["leco"].run(problem.question, default_backend, config=LECOConfig(), seed=0,
                                   gold=str(problem.answer)))
    assert isinstance(evs[0], E.RunStarted) and isinstance(evs[-1], E.RunFinished) and evs[-1].status == "done"
    tree = Tree.fold(evs)
    scores = [e for e in evs if isinstance(e, E.StepScores)]
    cuts = [e for e in evs if isinstance(e, E.StepCut)]
    answers = [e for e in evs if isinstance(e, E.RoundAnswer)]
    assert 2 <= len(answers) <= 4 and answers[-1].stop and len(cuts) == len(answers) - 1
    for sc, cut in zip(scores, cuts):
        rows = [r for r in sc.steps if r["candidate"]]
        lowest = sorted(rows, key=lambda r: (r["confidence"], r["index"]))[:2]
        assert cut.index == min(r["index"] for r in lowest)            # earliest of the two lowest
        assert cut.kept == sc.path[1:1 + cut.index]
        for r in sc.steps:
            if r["confidence"] is not None:
                assert r["confidence"] == pytest.approx(r["average"] + r["transition"] - r["divergence"], abs=1e-5)
        assert not any(r["candidate"] for r in sc.steps if "answer is" in tree[r["node"]].text)
    final = evs[-2]
    assert isinstance(final, E.FinalAnswer) and final.answer == S.leco_vote([a.answer for a in answers])
    assert evs[-1].generated_tokens > 0


# ---- eval: the generator's true values --------------------------------------------------------

def _problem():
    steps = (TrueStep(245, "-", 214, 31, "", ""), TrueStep(31, "*", 6, 186, "", ""), TrueStep(186, "/", 3, 62, "", ""))
    return Problem("t-1", "hard", "q", 62, steps)


def test_first_wrong_step_uses_the_true_intermediate_values():
    p = _problem()
    assert first_wrong_step(split_steps(SOLUTION), p) is None
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 = 196", "Step 3: 196 / 3 = 62",
                             "The answer is 62."], p) == 1
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 = 186", "The answer is 186."], p) == 2
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 = 186 = 180 + 6 = 186",
                             "Step 3: 186 / 3 = 62", "The answer is 62."], p) is None   # a worked step
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 - 6 = 25"], p) == 1          # not an event
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 = 186", "Step 3: 186 * 6 = 1116"],
                            p) == 2                                                            # used twice


def test_first_wrong_step_reads_a_merged_step_as_two_events():
    p = _problem()
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 / 3 = 62", "The answer is 62."], p) is None
    assert first_wrong_step(["Step 1: (245 - 214) * 6 = 186", "Step 2: 186 / 3 = 62", "The answer is 62."], p) is None
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 / 3 = 52", "The answer is 52."], p) == 1
    assert first_wrong_step(["Step 1: 245 - 214 = 31", "Step 2: 31 * 6 * 3 = 558"], p) == 1   # not an event
    assert first_wrong_step(["Step 1: 245 - 214 - 214 = 31"], p) == 0                          # used twice

def test_first_wrong_step_accepts_events_in_another_valid_order():
    steps = (TrueStep(300, "+", 40, 340, "", ""), TrueStep(340, "-", 25, 315, "", ""))
    p = Problem("t-2", "hard", "q", 315, steps)
    assert first_wrong_step(["Step 1: 300 - 25 = 275", "Step 2: 275 + 40 = 315", "The answer is 315."], p) is None
    assert first_wrong_step(["Step 1: 300 - 25 = 275", "Step 2: 275 + 40 = 305", "The answer is 305."], p) == 1


def test_eval_keys_count_cuts_and_broken_solutions(default_backend):
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    problems = load_problems(HELDOUT, "hard")[:2]
    results = [leco_result(p, list(run(p.question, default_backend, config=LECOConfig(max_rounds=1), seed=i,
                                       gold=str(p.answer)))) for i, p in enumerate(problems)]
    out = summarise(results)
    assert out["rounds_mean"] == 1.0
    assert out["original_accuracy"] == sum(r.original_correct for r in results) / 2
    assert out["broke_correct"] == sum(r.original_correct and not r.correct for r in results)
    assert out["with_wrong_step"] == sum(r.first_wrong is not None for r in results)


ENV = {**os.environ, "THOUGHTSCOPE_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_cli_eval_and_run_leco(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "eval", "--method", "leco", "--tier", "hard", "--n", "2",
                           "--max-rounds", "1", "--json"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("method", "model", "tier", "n", "accuracy", "generated_tokens", "wall_s", "rounds_mean",
                "cut_at_first_wrong_rate", "broke_correct_rate"):
        assert key in out
    assert out["method"] == "leco" and out["config"]["max_rounds"] == 1
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "leco", "--question", QUESTION, "--answer", "37",
                           "--db", str(tmp_path / "runs.db"), "--json"], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "leco" and out["status"] == "done" and out["generated_tokens"] > 0
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "leco", "--question", QUESTION,
                           "--token-probs", "top3", "--db", str(tmp_path / "runs.db")], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and "token_probs" in proc.stderr and "Traceback" not in proc.stderr
