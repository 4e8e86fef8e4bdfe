"""A faster runner for the code steps of PPM data collection: straight-line integer arithmetic is
evaluated in-process, everything else goes to the sandbox.

Claim-checked code MCTS (engine/search/code_mcts.py) runs every proposed step's cumulative
program in a fresh sandboxed process (engine/sandbox.py): about 0.1 s a program on this machine,
which is most of the time of a collection tree (hundreds of programs each). The embedded model's
programs are nothing but assignments of ``+ - * // % /`` over numbers and earlier variables, and
a ``print`` of the last variable; such a program is evaluated here by walking its syntax tree
with Python's own operators, so its output is exactly what the interpreter would print. Any
other program (a call, an attribute, a power, a loop, a string...) goes to the sandbox
unchanged, as does one whose evaluation raises (its error text is the interpreter's).

It is for collection only (``collect_pairs(..., code=True)``); the searches a user runs and
every evaluation use the sandbox. Not here: the search, the claim check.
"""

from __future__ import annotations

import ast
import operator
import time

from engine import sandbox

ISOLATION = "in-process arithmetic"
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod, ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_DIGITS = 40          # a larger intermediate value goes to the sandbox (nothing here grows that big)


class _NotArithmetic(Exception):
    pass


def _value(node, env: dict):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _value(node.left, env), _value(node.right, env)
        if b == 0 and type(node.op) in (ast.FloorDiv, ast.Mod, ast.Div):
            raise _NotArithmetic        # the interpreter's ZeroDivisionError text comes from the sandbox
        out = _BINOPS[type(node.op)](a, b)
        if isinstance(out, int) and len(str(abs(out))) > MAX_DIGITS:
            raise _NotArithmetic
        return out
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand, env))
    raise _NotArithmetic


def evaluate(program: str) -> str | None:
    """What ``program`` prints, when it is straight-line arithmetic; None otherwise."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return None
    env: dict = {}
    out: list[str] = []
    try:
        for st in tree.body:
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                env[st.targets[0].id] = _value(st.value, env)
            elif (isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and isinstance(st.value.func, ast.Name)
                  and st.value.func.id == "print" and len(st.value.args) == 1 and not st.value.keywords):
                out.append(str(_value(st.value.args[0], env)))
            else:
                raise _NotArithmetic
    except (_NotArithmetic, OverflowError, RecursionError):
        return None
    return "".join(line + "\n" for line in out)


def run_code(program: str) -> sandbox.Result:
    """sandbox.run_code's result for ``program``, computed in-process when it is plain arithmetic."""
    t0 = time.perf_counter()
    printed = evaluate(program)
    if printed is None:
        return sandbox.run_code(program)
    return sandbox.Result(status="ok", output=printed, seconds=round(time.perf_counter() - t0, 4),
                          isolation=ISOLATION, returncode=0)
