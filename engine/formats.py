"""Prompt formats: what stands between a method and a model family.

A format owns the text a solution continues from (the root prompt), how its steps are
delimited, what a solution is seeded with, when a whole solution stops, the token budgets, and
how a final answer is read. Methods ask their `StepProposer` (engine/search/common.py), which
asks the format; no method spells a root prompt or reads an answer itself.

Three formats (`FORMATS`):

- ``embedded`` — the embedded arithmetic model's own (engine/demo_model/formats.py):
  ``Question: ...`` then ``Step 1:`` lines, answers read only from ``The answer is N.``
  (engine/steps.py). Byte for byte what the model was trained on.
- ``chat`` — any model with a chat template: the template with one user message, an
  instruction to reason step by step and put the final answer in ``\\boxed{}`` (editable), steps
  separated by a blank line, answers read by engine/answers.py (``\\boxed{}``, ``#### N``, "The
  answer is", "Answer: N").
- ``base`` — a model without a chat template: a few-shot prompt (the project's own exemplars,
  or a user's file), ``Question:`` / ``Answer:`` with one step per line and "The answer is N.".

`auto_name(backend)` picks one (``auto``): a chat template → chat; ThoughtScope's own arithmetic
tokenizer (a vocabulary under 1,024 tokens, built by engine/demo_model/tokenizer.py; no real
LM's is that small) → embedded; else base. A user overrides it (``--format``), and the session
stores the format's name in its ``run_started`` event, so a replay says which format ran.

Not here: the methods' own prompts (rStar's action roots, LECO's rethink, code-verified steps,
SRA-MCTS's reflection and self-evaluation, semantic entropy's short answer and judge question),
written per format in engine/method_prompts.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine import answers, steps
from engine.demo_model import formats as demo
from engine.models.base import StopSpec

FORMAT_NAMES = ("embedded", "chat", "base")
CHOICES = ("auto",) + FORMAT_NAMES
# the shipped arith-llama-3m has 665 tokens (its BPE asked for 768; the problems' words ran out
# of pairs to merge), the tests' tiny tokenizers at most 400; real LMs' run to tens of thousands
EMBEDDED_VOCAB_MAX = 1024

# measured on SmolLM2-135M-Instruct, greedy, 20 word problems: this wording got an answer stated in
# 20 of 20 replies; asking for a blank line between steps as well, 15; "...written as \boxed{ANSWER}",
# 9; "End your reply with: The answer is <number>." (no box), 17 (docs/models.md)
CHAT_INSTRUCTION = "Solve the problem step by step. End your reply with: The answer is \\boxed{<number>}."

# the base format's own few-shot exemplars (written for this project): question, steps, answer
BASE_EXEMPLARS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Mia has 12 apples. She gives 5 to her brother and buys 8 more. How many apples does she have now?",
     ("Mia gives away 5 apples, so she has 12 - 5 = 7 apples.",
      "She buys 8 more, so she has 7 + 8 = 15 apples."), "15"),
    ("A box holds 6 rows of 4 pencils. Tom uses 9 pencils. How many pencils are left in the box?",
     ("The box holds 6 * 4 = 24 pencils.",
      "After Tom uses 9, there are 24 - 9 = 15 pencils left."), "15"),
    ("A train ticket costs $18 and a bus ticket costs $7. How much do 3 train tickets and 2 bus tickets cost?",
     ("Three train tickets cost 3 * 18 = 54 dollars.",
      "Two bus tickets cost 2 * 7 = 14 dollars.",
      "Together they cost 54 + 14 = 68 dollars."), "68"),
)


@dataclass(frozen=True)
class PromptFormat:
    name: str
    delimiter: str                      # between steps
    solution_prefix: str = ""           # what the first step is seeded with
    solution_stop: tuple[str, ...] = ()  # a whole solution ends at one of these (or EOS)
    max_step_tokens: int = 96
    max_solution_tokens: int = 256
    skip_leading_blank: bool = False    # a step never ends before it has text (chat: no blank steps)
    instruction: str = ""               # chat: the instruction before the question
    exemplars: tuple = field(default=(), repr=False)   # base: (question, steps, answer) triples

    def __post_init__(self) -> None:
        if self.name not in FORMAT_NAMES:
            raise ValueError(f"format must be one of {', '.join(FORMAT_NAMES)}, got {self.name!r}")
        for f in ("max_step_tokens", "max_solution_tokens"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 32768:
                raise ValueError(f"{f} must be a whole number from 1 to 32768, got {v!r}")

    # ---- prompts -----------------------------------------------------------------------------

    def root_prompt(self, backend, question: str) -> str:
        """The text a solution continues from."""
        from engine.inputs import check_text
        check_text(question)        # empty, too long, NUL, not UTF-8: before any tokenizer work
        q = question.strip()
        if self.name == "embedded":
            return demo.question_prompt(q)
        if self.name == "chat":
            content = f"{self.instruction}\n\n{q}" if self.instruction else q
            return backend.apply_chat_template([{"role": "user", "content": content}])
        shots = "".join(f"Question: {eq}\nAnswer:\n" + "".join(f"{s}\n" for s in es) + f"The answer is {ea}.\n\n"
                        for eq, es, ea in self.exemplars)
        return f"{shots}Question: {q}\nAnswer:\n"

    def stop(self, strings: tuple[str, ...] | None = None) -> StopSpec:
        """Where a generation in this format ends: at ``strings`` (default: a whole solution's
        stop) and EOS; where the format says ``skip_leading_blank``, only once the reply has text."""
        return StopSpec(self.solution_stop if strings is None else strings, after_text=self.skip_leading_blank)

    # ---- reading -----------------------------------------------------------------------------

    def read_answer(self, text: str | None) -> str | None:
        """The final answer a solution (or a step) states, as written; None when none is."""
        if self.name == "embedded":
            return steps.extract_answer(text or "")
        return answers.read_answer(text)

    def to_json(self) -> dict:
        return {"name": self.name, "delimiter": self.delimiter, "solution_prefix": self.solution_prefix,
                "max_step_tokens": self.max_step_tokens, "max_solution_tokens": self.max_solution_tokens,
                "instruction": self.instruction}


EMBEDDED = PromptFormat("embedded", delimiter=demo.STEP_DELIMITER, solution_prefix=demo.step_prefix(1),
                        solution_stop=("\n" + demo.QUESTION_PREFIX.strip(),), max_step_tokens=96,
                        max_solution_tokens=256)
CHAT = PromptFormat("chat", delimiter="\n\n", solution_stop=(), max_step_tokens=256, max_solution_tokens=1024,
                    skip_leading_blank=True, instruction=CHAT_INSTRUCTION)
BASE = PromptFormat("base", delimiter="\n", solution_stop=("\nQuestion:", "\n\n"), max_step_tokens=128,
                    max_solution_tokens=512, skip_leading_blank=True, exemplars=BASE_EXEMPLARS)
FORMATS = {f.name: f for f in (EMBEDDED, CHAT, BASE)}


def auto_name(backend) -> str:
    """The format a backend gets by default (see the module docstring)."""
    info = getattr(backend, "info", None)
    if getattr(info, "chat_template", False):
        return "chat"
    vocab = getattr(info, "vocab_size", None)
    if isinstance(vocab, int) and 0 < vocab <= EMBEDDED_VOCAB_MAX:     # 0: not known (a server)
        return "embedded"
    return "base"


def load_exemplars(path: str | Path) -> tuple:
    """A user's few-shot exemplars for the base format: a JSON list (or JSONL) of objects with
    ``question``, ``steps`` (a list of lines) and ``answer``. A ValueError names what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read exemplars file {str(p)!r}: {e.strerror or e}") from None
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines()
                                                                         if x.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"exemplars file {str(p)!r} is not JSON or JSONL: {e.msg} (line {e.lineno})") from None
    out = []
    for i, r in enumerate(rows):
        if not (isinstance(r, dict) and isinstance(r.get("question"), str) and isinstance(r.get("steps"), list)
                and all(isinstance(s, str) for s in r["steps"]) and r.get("answer") is not None):
            raise ValueError(f"exemplar {i} in {str(p)!r} needs 'question' (text), 'steps' (a list of lines) "
                             "and 'answer'")
        out.append((r["question"].strip(), tuple(s.strip() for s in r["steps"]), str(r["answer"]).strip()))
    if not out:
        raise ValueError(f"exemplars file {str(p)!r} holds no exemplars")
    return tuple(out)


def make(name: str = "auto", backend=None, *, instruction: str | None = None, exemplars: str | Path | None = None,
         max_solution_tokens: int | None = None) -> PromptFormat:
    """A format by name (``auto``: `auto_name(backend)`), with a user's instruction (chat),
    exemplars file (base) or whole-solution budget."""
    if name not in CHOICES:
        raise ValueError(f"format must be one of {', '.join(CHOICES)}, got {name!r}")
    fmt = FORMATS[auto_name(backend) if name == "auto" else name]
    info = getattr(backend, "info", None)
    if fmt.name == "chat" and info is not None and not getattr(info, "chat_template", False):
        raise ValueError(f"{getattr(info, 'name', 'this model')} has no chat template, so it cannot run the chat "
                         "format: use --format base (few-shot) or --format auto")
    if instruction is not None:
        fmt = replace(fmt, instruction=instruction.strip())
    if exemplars is not None:
        fmt = replace(fmt, exemplars=load_exemplars(exemplars))
    if max_solution_tokens is not None:
        fmt = replace(fmt, max_solution_tokens=max_solution_tokens)
    return fmt


def format_of(backend) -> PromptFormat:
    """The format a backend runs with: the one set on it (``backend.prompt_format``), else auto."""
    fmt = getattr(backend, "prompt_format", None)
    return fmt if isinstance(fmt, PromptFormat) else FORMATS[auto_name(backend)]
