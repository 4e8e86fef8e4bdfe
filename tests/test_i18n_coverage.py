"""Every user-visible string of the app has a Chinese entry (issue 24 part 1).

Three nets, each able to fail on its own:
- the built page: every component's label, info line, placeholder, button text, tab name,
  fixed Markdown and dropdown choice label is a `t()` marker (not a bare string) whose key is in
  app/locales/zh.json (a choice shown as its own value — a method id, a model name — is data, and
  so are the Sessions table's column names, the store's field names as the CLI prints them);
- the text the callbacks make: recorded sample runs shown through the app's text builders in
  Chinese, with every `t()` lookup that found no entry counted (`i18n.missing`), and no run of
  four English words left in them that is not the runs' own data (`english_sentences`);
- the source: a string literal passed to a Gradio component's text arguments or to gr.Error /
  gr.Warning / gr.Info without `t()` fails, naming the file and line; so does an engine error
  shown as ``gr.Error(str(e))`` instead of through `i18n.message` (its Chinese template).
Engine messages, triage reasons and table headers: tests/test_i18n_engine_messages.py.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import gradio as gr
import pytest

from app import i18n

APP = Path(__file__).resolve().parents[1] / "app"
TEXT_PROPS = ("label", "info", "placeholder")
VALUE_TEXT = (gr.Button, gr.Markdown)       # components whose value is text the app wrote
WORDS = re.compile(r"[A-Za-z]{2,}")
MARK = "__i18n__"
URL = re.compile(r"^[a-z]+://")                # an example address in a placeholder is data


def page_strings(demo):
    """(component, property, value) for every text a user reads in the built page."""
    for block in demo.blocks.values():
        for prop in TEXT_PROPS:
            value = getattr(block, prop, None)
            if value is not None:
                yield block, prop, value
        if isinstance(block, gr.Tab):
            yield block, "tab", block.label
        if isinstance(block, gr.HTML) and isinstance(block.value, str) and MARK in block.value:
            yield block, "value", block.value
        if isinstance(block, VALUE_TEXT) and isinstance(getattr(block, "value", None), (str, gr.i18n.I18nData)):
            if not getattr(block, "load_event_to_attach", None):        # a callable value: made per request
                yield block, "value", block.value
        for label, value in getattr(block, "choices", None) or []:
            if not (value and str(label).startswith(str(value))):   # shown as its own value: data (a model name)
                yield block, "choice", label


def problems_in(demo) -> list[str]:
    zh = i18n.catalogue("zh")
    problems = []
    for block, prop, value in page_strings(demo):
        if isinstance(value, str) and value.startswith(MARK):         # a marker Gradio turned into text
            value = gr.i18n.I18nData(json.loads(value[len(MARK):])["key"])
        where = f"{type(block).__name__} {block.elem_id or ''} {prop}"
        if isinstance(value, gr.i18n.I18nData):
            if value.key not in zh:
                problems.append(f"{where}: no Chinese for {value.key!r}")
            elif "}" in value.key:
                problems.append(f"{where}: a page marker's key cannot hold '}}' (Gradio cuts it): {value.key!r}")
        elif isinstance(value, str) and MARK in value:
            problems.append(f"{where}: a marker joined into other text (Gradio translates only a whole "
                            f"value; make it per request): {value[:60]!r}")
        elif isinstance(value, str) and WORDS.search(value) and not value.startswith("<") and not URL.match(value):
            problems.append(f"{where}: {value[:60]!r} is shown without t()")
    return problems


def test_every_string_in_the_built_page_has_a_chinese_entry(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    assert len(list(page_strings(demo))) > 100              # the walk sees the page, not nothing
    assert problems_in(demo) == []


def test_the_walk_fails_for_a_bare_string_and_for_a_missing_entry():
    with gr.Blocks() as demo:
        gr.Textbox(label="A label nobody wrapped", elem_id="bare")
        gr.Button(i18n.t("A button nobody translated"), elem_id="missing")
        gr.Markdown(i18n.t("Question"))
    found = problems_in(demo)
    assert any("bare" in p and "without t()" in p for p in found)
    assert any("missing" in p and "no Chinese" in p for p in found)
    assert len(found) == 2


# ---- the source scan ----------------------------------------------------------------------

GR_TEXT_ARGS = {"label", "info", "placeholder"}
FIRST_ARG_TEXT = {"Button", "Markdown", "Tab", "Accordion", "Error", "Warning", "Info"}
EXEMPT = {"i18n.py"}          # the mechanism itself


def bare_literals(path: Path) -> list[str]:
    """'file:line text' for each string literal (or f-string) handed to a gr.* text argument."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def is_text(node) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return bool(WORDS.search(node.value)) and not URL.match(node.value)
        return isinstance(node, ast.JoinedStr)

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if owner != "gr" and name not in ("Slider",):
            continue
        args = [(kw.arg, kw.value) for kw in node.keywords if kw.arg in GR_TEXT_ARGS]
        if name in FIRST_ARG_TEXT and node.args:
            args.append(("first", node.args[0]))
        for arg, value in args:
            if is_text(value):
                found.append(f"{path.name}:{node.lineno} gr.{name}({arg}=...) without t()")
        shown = node.args[0] if name in ("Error", "Warning", "Info") and node.args else None
        if isinstance(shown, ast.Call) and isinstance(shown.func, ast.Name) and shown.func.id == "str":
            found.append(f"{path.name}:{node.lineno} gr.{name}(str(...)) without message()")
    return found


def test_no_string_literal_reaches_a_gradio_component_without_t():
    found = [hit for path in sorted(APP.rglob("*.py")) if path.name not in EXEMPT for hit in bare_literals(path)]
    assert found == []


def test_the_scan_finds_a_bare_literal(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import gradio as gr\nfrom app.i18n import t\n'
                   'gr.Textbox(label="Question")\ngr.Textbox(label=t("Question"))\n'
                   'raise gr.Error(f"bad {x}")\nraise gr.Error(str(e))\nraise gr.Error(message(e))\n')
    assert bare_literals(bad) == ["bad.py:3 gr.Textbox(label=...) without t()",
                                  "bad.py:5 gr.Error(first=...) without t()",
                                  "bad.py:6 gr.Error(str(...)) without message()"]


# ---- the text callbacks make ----------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


def shown_in_chinese(store) -> list[str]:
    """Every recorded sample run opened as the Sessions tab opens it, then stepped event by
    event through the Search view's words, its node inspector, the rStar panel and the triage
    tally, in Chinese.
    Returns the texts made (each must be Chinese)."""
    from app import restore
    from app.inspector import inspect_node
    from app.mcts_tab import rstar_panel, view_outputs
    from app.replay import explain
    from app.triage_view import tally_markdown
    from engine.tree import Tree
    texts = []
    with i18n.using("zh"):
        for row in store.list_sessions():
            view = {"session_id": row["session_id"], "events": store.events(row["session_id"])}
            shown = {"leco": restore.show_in_leco, "se": restore.show_in_se}.get(restore.tab_of(view),
                                                                               restore.show_in_search)
            # the form's values (the question, the gold answer, the method id) are data, not words
            texts += [x for x in shown(view, None) if isinstance(x, str) and " " in x.strip()
                      and x != row["question"]]
            events = view["events"]
            tree = Tree()
            for k, ev in enumerate(events, 1):
                tree.apply(ev)
                texts.append(explain(tree, ev))
            _, progress, final, _ = view_outputs(events)
            texts += [progress, final, rstar_panel(view), tally_markdown(view)]
            for nid in range(len(tree)):
                texts.append(inspect_node(view, nid, len(events)))
    return [x for x in texts if x]


# four or more English words in a row: a sentence left in English (markup, code and quotes removed)
ENGLISH_RUN = re.compile(r"(?<![\w'`/.-])(?:[A-Za-z]{2,}[,;:]?\s+){3,}[A-Za-z]{2,}(?!\w)")
MARKUP = re.compile(r"`[^`]*`|<[^>]+>|&\w+;|'[^']*'|\"[^\"]*\"")


def english_sentences(texts: list[str], store) -> list[str]:
    """Runs of English words in ``texts`` that are not the runs' own data (questions, model text,
    passages: every string the stored events hold)."""
    data = []
    for row in store.list_sessions():
        for ev in store.events(row["session_id"]):
            for v in vars(ev).values():
                items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else [v]
                data += [str(x) for x in items]
    blob = " ".join(" ".join(data).split())
    found = {" ".join(m.split()) for x in texts for m in ENGLISH_RUN.findall(MARKUP.sub(" ", x))}
    return sorted(m for m in found if m not in blob)


def test_recorded_runs_are_told_in_chinese_with_no_missing_entry(store):
    from engine.sample_runs import import_samples
    assert len(import_samples(store)) >= 10
    i18n.missing.clear()
    texts = shown_in_chinese(store)
    assert len(texts) > 500
    assert sorted(i18n.missing) == []
    untold = [x[:80] for x in texts if not CJK.search(x)]
    assert untold == []
    # no sentence left in English inside a Chinese text (an f-string beside a t(), an engine message)
    assert english_sentences(texts, store) == []
    assert english_sentences(["模型说 the answer is certainly wrong here"], store) == ["the answer is certainly wrong here"]
