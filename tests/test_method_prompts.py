"""Method prompts through the format (engine/formats.py, "method prompts"): SRA-MCTS's reflection
and self-evaluation, semantic entropy's short answers and LM-judge question, and the math judge's
answer reading. On a tiny chat model the prompts the model is actually given are recorded and must
be fresh chat messages carrying the instruction; the embedded format's must be today's text."""

from __future__ import annotations

import pytest

from conftest import save_tiny
from engine import events as E
from engine import formats as F
from engine import method_prompts as MP
from engine.scoring import semantic_entropy as S
from engine.search import METHODS
from engine.search.sra_mcts import SRAConfig
from engine.search.sugar import SEConfig, SugarConfig, make_judge
from engine.tree import Tree

QUESTION = "Tom has 3 pens. He buys 2 more. How many pens does Tom have now?"
OPEN_QUESTION = "Who founded the Saltmarsh School in Velmora?"


class Recording:
    """A loaded backend that notes every prompt it is given: (prompt, stop, max_new_tokens) for
    generation, the prompt alone for a next-token distribution. Everything else is the backend's."""

    def __init__(self, backend):
        self._backend = backend
        self.calls: list[tuple[str, object, int]] = []
        self.distributions: list[str] = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def generate(self, prompts, **kw):
        self.calls += [(p, kw["stop"], kw["max_new_tokens"]) for p in prompts]
        return self._backend.generate(prompts, **kw)

    def distribution(self, prompt):
        self.distributions.append(prompt)
        return self._backend.distribution(prompt)


@pytest.fixture(scope="module")
def chat_backend(tmp_path_factory):
    from engine.models.transformers_backend import TransformersBackend
    path = save_tiny(tmp_path_factory.mktemp("chat-llama"), "llama", chat_template=True)
    backend = TransformersBackend.load(path, name="tiny-llama-chat")
    backend.prompt_format = F.make("chat", backend, max_solution_tokens=24)
    return backend


def _is_fresh_chat_message(prompt: str) -> bool:
    """One user message in the test template (conftest.CHAT_TEMPLATE), ready for the reply, and
    not the solution's root prompt continued (that one carries the math instruction)."""
    return (prompt.startswith("<|user|>\n") and prompt.endswith("\n<|assistant|>\n")
            and prompt.count("<|assistant|>") == 1 and F.CHAT_INSTRUCTION not in prompt)


# ---- SRA-MCTS --------------------------------------------------------------------------------------

def test_sra_on_a_chat_model_asks_reflection_and_score_as_fresh_chat_messages(chat_backend):
    backend = Recording(chat_backend)
    cfg = SRAConfig(rollouts=2, children=2, roll_branch=1, max_depth=2, max_step_tokens=12)
    events = list(METHODS["sra-mcts"].run(QUESTION, backend, config=cfg, seed=0, gold="5"))
    assert Tree.fold(events).finished.status == "done"
    reflections = [c for c in backend.calls if MP.SRA_CHAT_REFLECTION in c[0]]
    scores = [c for c in backend.calls if MP.SRA_CHAT_SCORE in c[0]]
    assert reflections and scores
    for prompt, stop, budget in reflections + scores:
        assert _is_fresh_chat_message(prompt), prompt
        assert prompt.startswith(f"<|user|>\nProblem:\n{QUESTION}\n\nSteps so far:\n")
        assert stop.strings == () and stop.eos and budget == 128        # a chat reply ends at EOS
    # the root is reflected on before any step exists; every score names the step it rates
    assert any(f"Steps so far:\n{MP.SRA_NO_STEPS}\n\n{MP.SRA_CHAT_REFLECTION}" in p for p, _, _ in reflections)
    assert all("\n\nNewest step:\n" in p for p, _, _ in scores)
    # nothing is asked as a continuation with the embedded model's labels
    assert not any(p.endswith((MP.SRA_ANALYSIS_LABEL, MP.SRA_SCORE_LABEL)) for p, _, _ in backend.calls)
    # proposals still continue the solution's own root prompt, with the chat format's step stop,
    # the reflection written before the step as a paragraph of the reply
    root = events[0].prompt
    proposals = [c for c in backend.calls if c[0].startswith(root) and c[2] <= cfg.max_step_tokens]
    assert proposals and all(s.strings == ("\n\n",) and s.after_text for _, s, _ in proposals)
    guides = [ev.text for ev in events if isinstance(ev, E.Reflected) and ev.text and not ev.ends]
    assert all(any(f"Analysis: {g}\n\n" in p for p, _, _ in proposals) for g in guides)
    evals = [ev for ev in events if isinstance(ev, E.SelfEvaluated)]
    assert evals and all(0 <= ev.score <= 10 for ev in evals)


def test_sra_embedded_prompts_are_todays_continuations(tiny_backend):
    fmt = F.EMBEDDED
    path = "Step 1: 3 + 2 = 5\n"
    # byte for byte what SRA-MCTS sent before formats had these prompts
    assert MP.sra_reflection_prompt(fmt, tiny_backend, QUESTION, path) == f"Question: {QUESTION}\n{path}Analysis:"
    assert MP.sra_reflection_prompt(fmt, tiny_backend, QUESTION, "") == f"Question: {QUESTION}\nAnalysis:"
    assert MP.sra_score_prompt(fmt, tiny_backend, QUESTION, path, "The answer is 5.\n") == \
        f"Question: {QUESTION}\n{path}The answer is 5.\nScore:"
    assert MP.sra_guide(fmt, "add 2 to 3") == "Analysis: add 2 to 3\n" and MP.sra_guide(fmt, "") == ""
    assert MP.sra_limits(fmt, "reflection") == (("\n",), 48) and MP.sra_limits(fmt, "score") == (("\n",), 8)


def test_sra_base_prompts_continue_the_few_shot_solution_after_a_line_saying_what_is_wanted(tiny_backend):
    fmt = F.BASE
    root = fmt.root_prompt(tiny_backend, QUESTION)
    # a step cut by its budget has no newline: the request still starts on its own line
    assert MP.sra_reflection_prompt(fmt, tiny_backend, QUESTION, "Tom has 3 pens.") == \
        f"{root}Tom has 3 pens.\n{MP.SRA_BASE_REFLECTION}\nAnalysis:"
    assert MP.sra_score_prompt(fmt, tiny_backend, QUESTION, "Tom has 3 pens.\n", "3 + 2 = 5.\n") == \
        f"{root}Tom has 3 pens.\n3 + 2 = 5.\n{MP.SRA_BASE_SCORE}\nScore:"
    assert MP.sra_limits(fmt, "score") == (("\n",), 8)


# ---- semantic entropy and SUGAR ------------------------------------------------------------------

def test_se_open_answers_on_a_chat_model_are_asked_in_a_few_words(chat_backend):
    backend = Recording(chat_backend)
    cfg = SEConfig(samples=2, task="open", judge="lm", max_answer_tokens=6)
    events = list(METHODS["se"].run(OPEN_QUESTION, backend, config=cfg, seed=0))
    assert Tree.fold(events).finished.status == "done"
    expected = chat_backend.apply_chat_template([{"role": "user",
                                                  "content": f"{MP.SE_OPEN_INSTRUCTION}\n\n{OPEN_QUESTION}"}])
    assert events[0].prompt == expected and _is_fresh_chat_message(expected)
    assert [p for p, _, _ in backend.calls] == [expected, expected]
    stop = backend.calls[0][1]
    assert stop.strings == ("\n",) and stop.after_text          # a reply opening with a blank line goes on
    # the LM judge's question: a chat message of its own, not under the math instruction
    judge = S.LMJudge(backend).prompt("Maud Tinsley", "It was Tinsley", OPEN_QUESTION)
    assert _is_fresh_chat_message(judge) and "Does Answer 1 semantically entail Answer 2?" in judge
    assert all(_is_fresh_chat_message(p) for p in backend.distributions)


def test_sugar_notes_on_a_chat_model_go_in_the_chat_message(chat_backend):
    backend = Recording(chat_backend)
    cfg = SugarConfig(task="open", policy="always", passages=1, max_answer_tokens=6, judge="lm")
    events = list(METHODS["sugar"].run(OPEN_QUESTION, backend, config=cfg, seed=0))
    assert Tree.fold(events).finished.status == "done"
    with_notes = backend.calls[-1][0]
    assert _is_fresh_chat_message(with_notes)
    assert "<|user|>\nNotes:\n[1] " in with_notes and f"{MP.SE_NOTES_INSTRUCTION}\n\n{OPEN_QUESTION}" in with_notes


def test_se_embedded_and_base_open_prompts(tiny_backend):
    # embedded: byte for byte what semantic entropy sent before (through render_prompt)
    assert MP.se_open_prompt(F.EMBEDDED, tiny_backend, OPEN_QUESTION) == \
        f"Question: Answer the following question in one short sentence.\n{OPEN_QUESTION}\n"
    assert MP.se_open_prompt(F.EMBEDDED, tiny_backend, OPEN_QUESTION, "[1] A note.") == \
        ("Question: Notes:\n[1] A note.\n\nUsing the notes, answer the question in one short sentence.\n"
         f"{OPEN_QUESTION}\n")
    text = 'We are evaluating answers to the question "q".'
    assert MP.se_judge_prompt(F.EMBEDDED, tiny_backend, text) == tiny_backend.render_prompt(text)
    # base: a plain question and answer, without the math exemplars
    assert MP.se_open_prompt(F.BASE, tiny_backend, OPEN_QUESTION) == \
        f"{MP.SE_BASE_LEAD}\n\nQuestion: {OPEN_QUESTION}\nAnswer:"
    assert MP.se_judge_prompt(F.BASE, tiny_backend, text) == f"{text}\nAnswer:"


def test_the_math_judge_reads_answers_with_the_models_format():
    class ChatModel:            # make_judge only asks the backend for its format
        prompt_format = F.CHAT

    judge = make_judge(SEConfig(task="math"), ChatModel(), "math")
    assert judge.answer_of("So 3 + 15 = 18.\n\n\\boxed{18}") == "18"
    # a boxed answer and a sentence stating the same number are one meaning
    assert judge.check("So 3 + 15 = 18.\n\n\\boxed{18}", "The answer is 18.") == S.ENTAILMENT
    assert judge.check("\\boxed{18}", "The final answer is 17.") == S.CONTRADICTION
    assert S.cluster(["\\boxed{18}", "The answer is 18.", "#### 17"], S.VerdictCache(judge, "q")).ids == [0, 0, 1]
    # the default (and the embedded format's) reader is unchanged: only "The answer is N."
    assert S.MathJudge().check("\\boxed{18}", "The answer is 18.") == S.NEUTRAL
    assert S.MathJudge(read_answer=F.EMBEDDED.read_answer).answer_of("\\boxed{18}") is None


def test_se_math_solutions_take_the_formats_budget_and_stop(chat_backend):
    backend = Recording(chat_backend)
    events = list(METHODS["se"].run("What is 2 + 3?", backend, config=SEConfig(samples=2, task="math"), seed=0))
    assert Tree.fold(events).finished.status == "done"
    assert {n for _, _, n in backend.calls} == {24}                 # the format's max_solution_tokens, not 256
    assert {s.strings for _, s, _ in backend.calls} == {F.CHAT.solution_stop}


def test_se_eval_on_math_problems_asks_for_math_answers_on_a_chat_model(chat_backend):
    # task "auto" picks "open" for a chat model; an eval's problems are math, so they are asked as math
    from engine.evaluation.evaluate import EVAL_METHODS, eval_problems
    backend = Recording(chat_backend)
    problems = eval_problems("se", "easy", 1)
    results = EVAL_METHODS["se"](backend, problems, SEConfig(samples=2), 0, lambda k: None)
    assert len(results) == 1 and backend.calls
    assert all(F.CHAT_INSTRUCTION in p for p, _, _ in backend.calls)             # the format's math root
    assert all(MP.SE_OPEN_INSTRUCTION not in p for p, _, _ in backend.calls)
