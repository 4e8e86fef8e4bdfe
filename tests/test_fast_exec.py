"""engine/ppm/fast_exec.py: straight-line arithmetic gives exactly the sandbox's status and output,
computed in-process; anything else is run by the real sandbox."""

from engine import sandbox
from engine.ppm import fast_exec

ARITHMETIC = ["x1 = 6 * 16\nprint(x1)\n", "x1 = 6 * 16\nx2 = x1 // 5\nprint(x2)\n", "x1 = 7\nx2 = x1 / 2\nprint(x2)\n",
              "x1 = 9 - 20\nx2 = x1 % 4\nprint(x2)\n", "x1 = 10\nx2 = x1 / 5\nprint(x2)\n", "x1 = -3 * -4\nprint(x1)\n",
              "x1 = 245 - 214\nx2 = x1 + 2\n"]
OTHER = ["x2 = x1 + 1\nprint(x2)\n", "x1 = 5 // 0\nprint(x1)\n", "x1 = 2 ** 3\nprint(x1)\n", "print(len('ab'))\n",
         "x1 = (\n"]


def test_arithmetic_programs_print_what_the_sandbox_prints_without_a_process():
    for p in ARITHMETIC:
        fast, real = fast_exec.run_code(p), sandbox.run_code(p)
        assert (fast.status, fast.output) == (real.status, real.output), p
        assert fast.isolation == fast_exec.ISOLATION
    assert fast_exec.evaluate("x1 = 7\nx2 = x1 / 2\nprint(x2)\n") == "3.5\n"       # true division prints a float


def test_anything_but_plain_arithmetic_goes_to_the_sandbox():
    for p in OTHER:
        assert fast_exec.evaluate(p) is None, p
        fast, real = fast_exec.run_code(p), sandbox.run_code(p)
        assert fast.isolation != fast_exec.ISOLATION and fast.status == real.status, p
    assert fast_exec.run_code("x2 = x1 + 1\nprint(x2)\n").status == "error"        # NameError, from the sandbox
