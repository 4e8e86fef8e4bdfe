"""Prompt formats (engine/formats.py): chosen from the model, overridable, stored with the run,
and every method runs through one on tiny random models of five real architectures."""

import dataclasses
import re
import json

import pytest

from conftest import ARCHITECTURES, save_tiny
from engine import events as E
from engine import formats as F
from engine import method_prompts as MP
from engine.models.base import Generation, TokenLogprob
from engine.search import METHODS
from engine.search.common import split_generation
from engine.tree import Tree

QUESTION = "Tom has 3 pens. He buys 2 more. How many pens does Tom have now?"
# every size-like field a method has, made small: a random model never stops on its own
SMALL = dict(rollouts=2, samples=2, children=2, beam_width=2, max_depth=2, max_step_tokens=12, max_rounds=1,
             final_votes=2, votes=2, subquestions=1, one_step_thoughts=1, roll_branch=1, cuts=1,
             completions_per_cut=1, max_answer_tokens=12)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def chat_backend(request, tmp_path_factory):
    from engine.models.transformers_backend import TransformersBackend
    path = save_tiny(tmp_path_factory.mktemp(f"chat-{request.param}"), request.param, chat_template=True)
    backend = TransformersBackend.load(path, name=f"tiny-{request.param}-chat")
    backend.prompt_format = F.make("chat", backend, max_solution_tokens=24)
    return backend


def _small(method: str):
    cls = METHODS[method].config
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in SMALL.items() if k in names})


def test_the_format_is_chosen_from_the_model(default_backend, tiny_backend, chat_backend):
    assert F.auto_name(default_backend) == "embedded"        # ThoughtScope's own tokenizer, no chat template
    assert F.auto_name(tiny_backend) == "embedded"
    assert F.auto_name(chat_backend) == "chat"               # a chat template

    class Info:                                              # a real vocabulary and no chat template
        chat_template, vocab_size = False, 32000

    class Base:
        info = Info()
    assert F.auto_name(Base()) == "base"


def test_the_embedded_format_is_todays_prompt(default_backend):
    fmt = F.format_of(default_backend)
    assert fmt.name == "embedded" and fmt.delimiter == "\n" and fmt.solution_prefix == "Step 1:"
    assert default_backend.render_prompt(QUESTION) == f"Question: {QUESTION}\n"
    assert fmt.read_answer("The answer is 5.") == "5" and fmt.read_answer("\\boxed{5}") is None


def test_chat_prompt_carries_the_instruction_through_the_template(chat_backend):
    prompt = chat_backend.render_prompt(QUESTION)
    assert prompt.startswith("<|user|>\n" + F.CHAT_INSTRUCTION) and QUESTION in prompt
    assert prompt.endswith("<|assistant|>\n")
    own = F.make("chat", chat_backend, instruction="Answer in one line.")
    assert own.root_prompt(chat_backend, QUESTION) == f"<|user|>\nAnswer in one line.\n\n{QUESTION}\n<|assistant|>\n"


def test_base_prompt_is_few_shot_and_reads_the_users_exemplars(tmp_path, tiny_backend):
    fmt = F.make("base")
    prompt = fmt.root_prompt(tiny_backend, QUESTION)
    assert prompt.count("Question: ") == len(F.BASE_EXEMPLARS) + 1 and prompt.endswith(f"Question: {QUESTION}\nAnswer:\n")
    assert "The answer is 68.\n" in prompt
    path = tmp_path / "shots.jsonl"
    path.write_text(json.dumps({"question": "What is 1 + 1?", "steps": ["1 + 1 = 2."], "answer": 2}) + "\n")
    own = F.make("base", exemplars=path).root_prompt(tiny_backend, QUESTION)
    assert own == "Question: What is 1 + 1?\nAnswer:\n1 + 1 = 2.\nThe answer is 2.\n\n" + f"Question: {QUESTION}\nAnswer:\n"
    path.write_text('{"question": "no steps"}\n')
    with pytest.raises(ValueError, match="exemplar 0 .* needs 'question'"):
        F.make("base", exemplars=path)
    with pytest.raises(ValueError, match="format must be one of"):
        F.make("alpaca")
    with pytest.raises(ValueError, match="has no chat template, so it cannot run the chat format.*--format base"):
        F.make("chat", tiny_backend)


def _gen(pieces, stop="eos"):
    toks = [TokenLogprob(i, t, -0.1) for i, t in enumerate(pieces)]
    return Generation(text="".join(pieces), tokens=toks, stop_reason=stop)


def test_chat_steps_split_at_blank_lines_and_blank_lines_are_no_steps():
    gen = _gen(["\n\n", "Tom", " has 3.", "\n\n", "3 + 2 = 5.", "\n\n", "\\boxed{5}"])
    steps = split_generation(gen, F.CHAT.delimiter, "", F.CHAT)
    assert [s.text for s in steps] == ["\n\nTom has 3.\n\n", "3 + 2 = 5.\n\n", "\\boxed{5}"]
    assert [s.answer for s in steps] == [None, None, "5"] and steps[-1].terminal


def test_every_method_runs_on_a_chat_model_and_stores_its_format(chat_backend, method=None):
    for method in METHODS:
        events = list(METHODS[method].run(QUESTION, chat_backend, config=_small(method), seed=0, gold="5"))
        tree = Tree.fold(events)
        assert tree.run.format == "chat", method
        assert tree.finished is not None and tree.finished.status == "done", (method, tree.finished)
        assert E.from_json(json.loads(events[0].dumps())).format == "chat"


def test_a_recording_from_before_formats_replays_as_embedded():
    ev = {"type": "run_started", "method": "greedy", "question": "q", "prompt": "Question: q\n", "gold": None,
          "config": {}, "seed": 0, "model": "arith-llama-3m"}
    assert E.from_json(ev).format == "embedded"


def test_rstar_actions_continue_their_own_kind_of_demonstration(tmp_path, tiny_backend):
    from engine.models.transformers_backend import TransformersBackend
    backend = TransformersBackend.load(save_tiny(tmp_path / "m", "llama", chat_template=True), name="tiny-chat")
    backend.prompt_format = F.make("chat", backend, max_solution_tokens=16)
    seen = []
    real = backend.generate

    def recording(prompts, **kw):
        seen.extend(prompts)
        return real(prompts, **kw)
    backend.generate = recording
    list(METHODS["rstar"].run(QUESTION, backend, config=_small("rstar"), seed=0, gold="5"))
    assert seen and all(p.startswith("<|user|>\n") for p in seen)
    a3 = [p for p in seen if p.rstrip().endswith("Sub-question 1:")]
    a5 = [p for p in seen if p.endswith("Rephrased:")]
    a1 = [p for p in seen if p.endswith("Step 1:")]
    assert a3 and all(MP.RSTAR_DEMOS["subquestions"] in p for p in a3)
    assert a5 and all(MP.RSTAR_DEMOS["rephrase"] in p for p in a5)
    assert a1 and all(MP.RSTAR_DEMOS["steps"] in p for p in a1)
    # the embedded model needs no demonstration: every kind is its own root, as before
    for family in MP.RSTAR_FAMILIES:
        assert MP.rstar_prompt(F.EMBEDDED, tiny_backend, QUESTION, family) == f"Question: {QUESTION}\n"


class _ChatScript:
    """A scripted chat model (pure search logic): replies from a list, one token per word, the
    blank line between paragraphs a token of its own; the third word after '=' is unsure."""

    from engine.models.base import ModelInfo
    info = ModelInfo("scripted-chat", "-", 0, "cpu", "float32", 5000, 4096, True, "none")

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def apply_chat_template(self, messages):
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"

    def generate(self, prompts, *, sampling, stop, max_new_tokens, seed, should_stop=None):
        import math
        self.prompts += prompts
        text, toks, unsure = self.replies.pop(0), [], False
        for piece in text.replace("\n\n", " \n\n ").split(" "):
            if not piece:
                continue
            tok = piece if piece == "\n\n" else " " + piece
            p = 0.3 if unsure else 0.99
            unsure = piece == "="
            toks.append(TokenLogprob(0, tok, math.log(p), ((tok, math.log(p)), ("x", math.log(0.01)))))
        return [Generation("".join(t.token for t in toks), tuple(toks), "eos", prompt_tokens=5)]


def test_leco_on_a_chat_model_scores_paragraphs_and_rethinks_from_a_fresh_message():
    b = _ChatScript(["Tom has 3 pens.\n\nHe buys 2, so 3 + 2 = 6.\n\n\\boxed{6}",
                     "He buys 2, so 3 + 2 = 5.\n\n\\boxed{5}", "3 + 2 = 5.\n\n\\boxed{5}"])
    events = list(METHODS["leco"].run(QUESTION, b, config=METHODS["leco"].config(max_rounds=2, lowest=1), seed=0,
                                      gold="5"))
    scores = [e for e in events if isinstance(e, E.StepScores)]
    assert [len(s.steps) for s in scores][0] == 3                          # three paragraphs, three steps
    assert scores[0].steps[2]["reason"] == "states the answer"             # \boxed{} read by the chat reader
    cut = next(e for e in events if isinstance(e, E.StepCut))
    assert cut.index == 1 and len(cut.kept) == 1                            # the unsure '= 6' paragraph
    rethink = b.prompts[1]
    assert rethink.startswith("<|user|>\nProblem:\n" + QUESTION) and "Correct first steps:\nTom has 3 pens." in rethink
    assert rethink.endswith("<|assistant|>\n") and MP.LECO_CHAT_RETHINK in rethink
    answers = [e.answer for e in events if isinstance(e, E.RoundAnswer)]
    assert answers == ["6", "5", "5"] and Tree.fold(events).final.answer == "5"


class _ChatCoder(_ChatScript):
    """Writes rStar-Math-style code steps after the ``# Step k:`` the search seeds: the k-th step
    of the demo problem."""

    STEPS = [" 6 rows of 4\ntotal = 6 * 4\n\n", " 24 - 9 = 15 left\nleft = total - 9\n\n", " the answer\nprint(left)"]

    def generate(self, prompts, *, sampling, stop, max_new_tokens, seed, should_stop=None):
        self.prompts += prompts
        out = []
        for p in prompts:
            reply = p.split("<|assistant|>\n", 1)[1]
            assert reply.endswith(f"# Step {reply.count('# Step')}:")          # each step is seeded
            text = self.STEPS[min(reply.count("# Step") - 1, 2)]
            toks = tuple(TokenLogprob(0, t, -0.1) for t in re.split(r"(?<=\n\n)", text) if t)
            out.append(Generation(text, toks, "stop" if text.endswith("\n\n") else "eos", prompt_tokens=5))
        return out


def test_code_mcts_on_a_chat_model_asks_rstar_math_steps_and_the_printed_value_answers():
    from engine.search.code_mcts import parse_code_block
    assert parse_code_block("```python\n# Step 2: 24 - 9 = 15 left\nleft = total - 9\n```") == \
        parse_code_block("# Step 2: 24 - 9 = 15 left\nleft = total - 9\n")
    b = _ChatCoder([])
    cfg = METHODS["mcts-code"].config(rollouts=2, children=1, max_depth=4)
    events = list(METHODS["mcts-code"].run("A box holds 6 rows of 4 pencils. Tom uses 9. How many are left?", b,
                                           config=cfg, seed=0, gold="15"))
    assert b.prompts[0].startswith("<|user|>\n" + MP.CODE_CHAT_INSTRUCTION) and MP.CODE_DEMO in b.prompts[0]
    code = [e for e in events if isinstance(e, E.CodeExecuted)]
    assert [c.passed for c in code] == [True, True, True]
    assert code[1].claim == "15" and code[1].claim_ok and code[1].program == "total = 6 * 4\nleft = total - 9\nprint(left)\n"
    tree = Tree.fold(events)
    last = tree[code[2].node]
    assert last.terminal and last.answer == "15" and last.correct and tree.final.answer == "15"
