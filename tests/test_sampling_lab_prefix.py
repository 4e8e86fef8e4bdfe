"""The Sampling lab shows the forced "Step 1:" before the model's tokens, marked as not sampled,
as the Search view's tree and node inspector show it (issue 23)."""

from app.inspector import forced_html
from app.sampling_tab import BackendPool, branch_here, generate_lab

QUESTION = "Ada has 4 pens and buys 3 more. How many pens?"


def test_the_lab_text_starts_with_the_forced_prefix_as_the_inspector_marks_it(tiny_backend):
    forced = tiny_backend.solution_prefix()
    assert forced.strip() == "Step 1:"                       # a non-chat model's solutions are seeded with it
    pool = BackendPool(tiny_backend)
    html_, _, state, _ = generate_lab(pool, tiny_backend.info.name, QUESTION, "min_p", 1.0, 0.1, 0.9, 40, 0, 6)
    body = html_.split('<div class="ts-tokens">', 1)[1]
    # the same markup the inspector gives a tree node whose text starts with the forced prefix
    gen = state["run"].generation
    marked = forced_html(forced + gen.text, gen.tokens)
    assert marked and body.startswith(marked)
    assert body.index("ts-forced") < body.index('<span class="ts-tok')   # before the first sampled token
    assert html_.count('<span class="ts-tok') == 6                       # the prefix is not counted as a token
    branched = branch_here(pool, state, 2, "greedy", 1.0, 0.1, 0.9, 40, 0, 4)
    assert branched.count(marked) == 2                                   # both columns start with it
