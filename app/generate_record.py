"""A Generate run as a stored session, like every other run.

One sampled solution is a two-node tree: the prompt (root) and the solution (a terminal node
holding the generated tokens and the answer read from them), then the answer and the end of the
run. So the Sessions tab lists it, filters it by its method ``generate``, exports it, and opens
it in the Search view (its tree, its answer, its tokens in the node inspector).

Not here: generating (app/generate_tab.py `run_generation`); the store (engine/store.py).
"""

from __future__ import annotations

import gradio as gr

from app.i18n import message
from engine import events as E
from engine.steps import answers_equal, extract_answer
from engine.store import StoreError

METHOD = "generate"          # the stored runs' method name (the Sessions tab's filter lists it)
RULE = "the one sample"       # FinalAnswer.rule: Generate draws a single solution


def generation_events(backend, question: str, prompt: str, gold, config: dict, seed: int, gen,
                      status: str = "done", message: str = "") -> list[E.Event]:
    """The events of one generation (``gen`` None: stopped before it was written)."""
    from engine import formats
    gold_text = None if gold is None else str(gold)
    events: list[E.Event] = [
        E.RunStarted(method=METHOD, question=question.strip(), prompt=prompt, gold=gold_text, config=config,
                     seed=seed, model=backend.info.name, format=formats.format_of(backend).name),
        E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=prompt)]
    if gen is None:
        return events + [E.RunFinished(status=status, message=message)]
    answer = extract_answer(gen.text)
    correct = None if gold_text is None else answers_equal(answer, gold_text)
    events += [E.NodeProposed(node=1, parent=E.ROOT, depth=1, action="answer", text=gen.text,
                              tokens=[t.to_json() for t in gen.tokens], terminal=True, answer=answer,
                              correct=correct),
               E.FinalAnswer(answer=answer, rule=RULE, path=[E.ROOT, 1], correct=correct),
               E.RunFinished(status=status, generated_tokens=len(gen.tokens), message=message)]
    return events


def record_generation(store, events: list[E.Event], wall_s: float) -> str:
    """Store the events as a finished session; a database that cannot be written is a gr.Error."""
    run, end = events[0], events[-1]
    try:
        sid = store.create_session(method=METHOD, model=run.model, question=run.question, gold=run.gold,
                                   config=run.config, seed=run.seed)
        for ev in events:
            store.append(sid, ev)
        store.finish(sid, status=end.status, message=end.message, wall_s=wall_s)
    except StoreError as e:
        raise gr.Error(message(e), print_exception=False) from None
    return sid
