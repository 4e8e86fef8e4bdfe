"""Code-verified MCTS (rStar-Math style): every step carries code, and the code must run.

The search is the step-level MCTS of mcts.py, with two changes:

1. the prompt is the model's code format (engine/formats.py `code_prompt`): for the embedded
   model the question, then ``Code:``, so each step reads ``Step k: xk = x(k-1) op n  # a op b
   = c``; for chat and base models rStar-Math's own step format — a ``# Step k: ...`` comment
   (the reasoning) and its Python, steps split at blank lines, the last step ``print``-ing the
   answer, whose output becomes the step's answer (`parse_code_block`);
2. each proposed step's code is executed in the sandbox (engine/sandbox.py) **cumulatively**,
   as rStar-Math does: the program is the code of every earlier passing step on the path, then
   this step's code, then ``print(xk)`` of the variable it assigns. The result is a
   ``CodeExecuted`` event right after the step's ``NodeProposed``.

A step fails when its program does not run (error, timeout, killed) or it has no code; with
``check="runs_and_claim"`` it also fails when the printed value differs from the result its
comment claims (``# 96 / 2 = 48`` claims 48). After ``max_failures`` consecutive failing
steps on a path the branch ends there: the node is terminal and its reward is −1.
Failing steps' code is left out of later programs, so a later step is judged on its own code.

Dropping failed steps, as rStar-Math does, is two options (both off by default, so earlier runs
replay and re-run unchanged): ``resample`` — an expansion whose steps failed samples that many
replacements, up to ``resample`` more times, so the node still gets ``children`` passing steps;
``drop_failed`` — a failed step is never selected while a sibling passed, so no rollout is spent
walking into it. With both, the search runs over verified steps only, as rStar-Math's does.

Deliberate differences from rStar-Math (docs/code_mcts.md): rStar-Math removes failing steps
from the tree; here they stay, visible, as terminal nodes with reward −1 (``max_failures = 1``
is the paper's filter), and with ``drop_failed`` they are skipped by selection instead. The
embedded model writes one assignment per step (its own format); chat and base models write
rStar-Math's commented Python. With a process preference model (``reward="ppm"`` or ``ppm``,
engine/ppm/) only steps that passed are scored; a failed one gets -1 without being shown to
it (mcts.py's PathScorer). Preference pairs for training one come from engine/pairs.py.

Not here: the sandbox itself, or drawing (app/).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Callable, Iterator

from engine import events as E
from engine import sandbox
from engine.answers import read_answer
from engine.formats import EMBEDDED, PromptFormat, format_of
from engine.method_prompts import CODE_STEP_MARK, code_delimiter, code_prompt, code_step_prefix
from engine.search.common import StepProposer, check_field as _check, is_whole as _int
from engine.search.mcts import MCTSConfig, search
from engine.steps import step_claims
from engine.tree import Tree

CHECKS = ("runs", "runs_and_claim")
OMITTED_AT_DEFAULT = ("resample", "drop_failed")   # settings left out of the config JSON at their default
FAILURE_REWARD = -1.0
PARALLEL = 3        # sibling programs run at once (each in its own sandboxed process)

# "Step 2: x2 = x1 // 2  # 96 / 2 = 48" -> code "x2 = x1 // 2", comment "96 / 2 = 48"
_CODE_STEP = re.compile(r"^\s*Step\s+\d+\s*:\s*(?P<code>[^#\n]*?)\s*(?:#\s*(?P<comment>[^\n]*))?\s*$")
_TARGET = re.compile(r"^\s*([A-Za-z_]\w*)\s*=(?!=)")


@dataclass(frozen=True)
class CodeMCTSConfig(MCTSConfig):
    max_failures: int = 1               # consecutive failing steps that end a branch (1: rStar-Math's filter)
    check: str = "runs"                 # "runs" (rStar-Math) or "runs_and_claim" (the comment must agree)
    resample: int = 0                   # extra batches replacing an expansion's failed steps (0: none)
    drop_failed: bool = False           # never walk into a failed step while a sibling passed

    def __post_init__(self) -> None:
        super().__post_init__()
        _check("max_failures", self.max_failures, _int(self.max_failures) and 1 <= self.max_failures <= 64,
               "from 1 to 64")
        _check("check", self.check, self.check in CHECKS, f"one of {CHECKS}")
        _check("resample", self.resample, _int(self.resample) and 0 <= self.resample <= 16, "from 0 to 16")
        _check("drop_failed", self.drop_failed, isinstance(self.drop_failed, bool), "true or false")

    def to_json(self) -> dict:
        out = super().to_json()
        defaults = {f.name: f.default for f in fields(self)}
        for key in OMITTED_AT_DEFAULT:
            if out[key] == defaults[key]:
                del out[key]    # runs recorded before these options replay and re-run byte for byte
        return out


class CodeStepProposer(StepProposer):
    """The StepProposer with the code prompt of the model's format (engine/formats.py
    `code_prompt`: the embedded model's ``Code:`` line, or rStar-Math's commented Python)."""

    def __init__(self, backend, question: str, **kw):
        super().__init__(backend, question, **kw)
        self.prompt = code_prompt(self.format, backend, question)
        self.delimiter = code_delimiter(self.format)

    def _prompts(self, path_texts):
        """Chat and base models get each step's ``# Step k:`` comment written for them, as rStar
        forces an action by its prefix: a small model that would answer in prose starts the step
        in the format (the embedded model: only its first step is seeded, as before)."""
        if self.format.name == "embedded":
            return super()._prompts(path_texts)
        prefixes = [code_step_prefix(p.count(CODE_STEP_MARK) + 1) for p in path_texts]
        return [self.prompt + p + f for p, f in zip(path_texts, prefixes)], prefixes


@dataclass(frozen=True)
class ParsedStep:
    code: str | None            # None: the step carries no code
    target: str | None          # the variable it assigns
    claim: str | None           # the result its comment claims


def parse_code_step(text: str) -> ParsedStep:
    """``parse_code_step("Step 2: x2 = x1 // 2  # 96 / 2 = 48\\n")`` ->
    ParsedStep(code="x2 = x1 // 2", target="x2", claim="48")."""
    m = _CODE_STEP.match(text.strip())
    if not m or not m.group("code").strip():
        return ParsedStep(None, None, None)
    code = m.group("code").strip()
    target = _TARGET.match(code)
    claims = step_claims(m.group("comment") or "")
    return ParsedStep(code, target.group(1) if target else None, str(claims[-1][3]) if claims else None)


_FENCE = re.compile(r"^\s*```")
_PRINT = re.compile(r"^\s*print\s*\(")


def parse_code_block(text: str) -> ParsedStep:
    """A step in rStar-Math's format: comment lines (the reasoning) and code lines. The target is
    the last variable assigned; the claim is the result a comment's ``a op b = c`` states.
    ``parse_code_block("# Step 2: 24 - 9 = 15 left\nleft = total - 9\n")`` ->
    ParsedStep(code="left = total - 9", target="left", claim="15")."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FENCE.match(ln)]
    comments = [ln.strip().lstrip("#").strip() for ln in lines if ln.strip().startswith("#")]
    code = [ln.rstrip() for ln in lines if not ln.strip().startswith("#")]
    if not code:
        return ParsedStep(None, None, None)
    targets = [m.group(1) for m in (_TARGET.match(ln) for ln in code) if m]
    claims = [c for comment in comments for c in step_claims(comment)]
    return ParsedStep("\n".join(code), targets[-1] if targets else None, str(claims[-1][3]) if claims else None)


def prints(code: str) -> bool:
    """Whether a step's code prints (rStar-Math's last step: its output is the answer)."""
    return any(_PRINT.match(ln) for ln in code.splitlines())


def cumulative_program(earlier: list[str], code: str, target: str | None) -> str:
    """The program a step is judged by: earlier passing steps' code, its own, a print of its variable."""
    lines = [*earlier, code]
    if target:
        lines.append(f"print({target})")
    return "\n".join(lines) + "\n"


def passing_code_on_path(tree: Tree, node_id: int) -> list[str]:
    """Code of the passing steps from the root down to ``node_id`` (inclusive), in order."""
    return [tree[n].code["code"] for n in tree.path_to(node_id)
            if tree[n].code is not None and tree[n].code["passed"]]


def failures_at(tree: Tree, node_id: int) -> int:
    """Consecutive failing steps ending at ``node_id`` (0 when it passed or carries no check)."""
    info = tree[node_id].code
    return info["failures"] if info is not None and not info["passed"] else 0


class CodeVerifier:
    """Runs each proposed step's cumulative program in the sandbox (mcts.StepVerifier). With a
    chat or base format (rStar-Math's step format) a step that prints ends the solution: its
    output is the step's answer."""

    def __init__(self, config: CodeMCTSConfig, run_code: Callable[[str], sandbox.Result] | None = None,
                 fmt: PromptFormat = EMBEDDED):
        self.config = config
        self.format = fmt
        self.parse = parse_code_step if fmt.name == "embedded" else parse_code_block
        self.run_code = run_code or sandbox.run_code
        self.cache: dict[str, sandbox.Result] = {}     # same program, same outcome: run once per search

    def _execute(self, programs: list[str]) -> list[sandbox.Result]:
        todo = sorted({p for p in programs if p not in self.cache})
        if todo:
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                for p, r in zip(todo, pool.map(self.run_code, todo)):
                    self.cache[p] = r
        return [self.cache[p] for p in programs]

    def check(self, tree: Tree, parent: int, first_id: int, steps: list) -> list[tuple[bool, list[E.Event]]]:
        earlier = passing_code_on_path(tree, parent)
        before = failures_at(tree, parent)
        parsed = [self.parse(s.text) if s.answer is None and s.text.strip() else None for s in steps]
        final = [p is not None and p.code is not None and self.format.name != "embedded" and prints(p.code)
                 for p in parsed]
        programs = [cumulative_program(earlier, p.code, None if f else p.target)
                    for p, f in zip(parsed, final) if p and p.code]
        results = iter(self._execute(programs))
        out = []
        for i, (s, p) in enumerate(zip(steps, parsed)):
            if p is None:                   # an answer (or empty) step: nothing to run
                out.append((False, []))
                continue
            if p.code is None:
                status, output, program, value, iso = "no_code", "", "", None, ""
            else:
                r = next(results)
                status, output, iso = r.status, r.output, r.isolation
                program = cumulative_program(earlier, p.code, None if final[i] else p.target)
                value = output.strip().splitlines()[-1] if status == "ok" and (p.target or final[i]) \
                    and output.strip() else None
                if final[i] and value is not None:      # the printed answer ends the solution
                    s.answer, s.terminal = read_answer(value) or value.strip(), True
            claim_ok = None if value is None or p.claim is None else value == p.claim
            passed = status == "ok" and (self.config.check == "runs" or claim_ok is True)
            failures = 0 if passed else before + 1
            ends = failures >= self.config.max_failures
            out.append((ends, [E.CodeExecuted(node=first_id + i, code=p.code or "", program=program, status=status,
                                              output=output, passed=passed, value=value, claim=p.claim,
                                              claim_ok=claim_ok, failures=failures, ends_branch=ends,
                                              isolation=iso)]))
        return out

    def reward(self, tree: Tree, leaf) -> tuple[float, str, dict] | None:
        info = leaf.code
        if info is not None and info["ends_branch"]:
            return FAILURE_REWARD, "code_failure", {"failures": info["failures"], "status": info["status"]}
        return None


def run(question: str, backend, *, config: CodeMCTSConfig = CodeMCTSConfig(), seed: int = 0, gold=None,
        should_stop: Callable[[], bool] | None = None,
        run_code: Callable[[str], sandbox.Result] | None = None) -> Iterator[E.Event]:
    """Yield the events of one code-verified MCTS run. ``run_code``: the program runner (default
    the sandbox; PPM data collection passes engine/ppm/fast_exec.py's)."""
    yield from search(question, backend, config=config, seed=seed, gold=gold, should_stop=should_stop,
                      method="mcts-code", proposer_cls=CodeStepProposer,
                      verifier=CodeVerifier(config, run_code=run_code, fmt=format_of(backend)))
