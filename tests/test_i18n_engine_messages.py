"""What the engine says, in Chinese (issue 24): its error messages, the triage reasons and the
column headers of the app's tables. Each net fails for a new string left in English:

- engine messages: the messages a student can trigger from the app's controls are raised for
  real (every method setting out of range, an empty / huge / NUL question, a missing or broken
  model, a corrupt or foreign database, a malformed session file) and each must come out of
  `app.i18n.message` in Chinese, with no English sentence left in it; an unknown message stays
  English and nothing raises;
- triage reasons: every template of engine/triage.py `REASONS` has a Chinese entry, and a real
  run's reason renders in Chinese with its numbers;
- table headers: every gr.Dataframe of the built app has a Chinese entry for each header and gets
  its value (so its headers) per page load, and the callbacks that fill the tables send headers in
  the request's language.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3

import gradio as gr
import pytest

from app import i18n
from engine import triage as T
from engine.models.base import InputError, ModelLoadError
from engine.store import Store, StoreError

CJK = re.compile(r"[\u4e00-\u9fff]")
# the English glue words of a sentence; data in a message (quoted values, paths, flags, field
# names, numbers) is removed before looking for them
GLUE = re.compile(r"\b(must|got|the|is|are|not|from|one of|cannot|could|does|needs?|give|type|pick|"
                  r"shorten|remove|was|written|expected|has|have|with|without|or|and|to|of|at|in)\b")
DATA = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\([^()]*'[^()]*\)|\S*[/\\]\S*|--[\w-]+|\$\w+|\w+_\w+|\w+\.\w+")


def leftover_english(zh: str) -> list[str]:
    """English glue words left in a translated message, data removed."""
    return GLUE.findall(DATA.sub(" ", zh))


def assert_chinese(messages: list[str]) -> None:
    """Each message matches a template and comes out Chinese; only data and the ``why`` slot
    (another library's own words: SQLite's, transformers') may stay English."""
    bad = []
    for english in messages:
        zh = i18n.message(english, "zh")
        found = i18n.message_match(english, "zh")
        foreign = found[1].get("why", "") if found else ""
        if found is None or not CJK.search(zh) or leftover_english(zh.replace(foreign, " ") if foreign else zh):
            bad.append(f"{english!r} -> {zh!r}")
    assert bad == [], "messages without a full Chinese template in app/locales/zh_messages.json:\n" + "\n".join(bad)


# ---- engine messages -------------------------------------------------------------------------------

def bad_values(default):
    """Values a form or the API could send for a field with this default."""
    if isinstance(default, bool):
        return ["maybe"]
    if isinstance(default, int):
        return [-5, 10**9]
    if isinstance(default, float):
        return [-5.0, 1e9, float("nan")]
    if isinstance(default, str):
        return ["no-such-choice"]
    return []


def config_messages() -> list[str]:
    """The ValueError of every method setting given a bad value (as the Search, LECO and SE
    tabs' forms and `thoughtscope run METHOD --FIELD` build the config)."""
    from engine.search import METHODS
    from engine.sampling import SamplingConfig
    out = []
    classes = {m.config for m in METHODS.values()} | {SamplingConfig}
    for cls in sorted(classes, key=lambda c: c.__name__):
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING:
                continue
            for value in bad_values(f.default):
                try:
                    cls(**{f.name: value})
                except (ValueError, TypeError) as e:
                    out.append(str(e))
    return out


def test_every_method_setting_out_of_range_is_said_in_chinese():
    messages = config_messages()
    assert len(messages) > 60            # the walk reaches the settings, not nothing
    assert any(m.startswith("rollouts must be") for m in messages)
    assert_chinese(messages)


def test_the_question_checks_are_said_in_chinese():
    from engine.inputs import MAX_QUESTION_CHARS, check_text, number, whole
    messages = []
    for text, what in ((5, "the question"), ("", "the question"), ("x" * (MAX_QUESTION_CHARS + 1), "the question"),
                       ("a\x00b", "the question"), ("bad \udcff", "the question"), ("", "--question"),
                       ("x" * 2000, "the gold answer")):
        with pytest.raises(InputError) as e:
            check_text(text, what, max_chars=1000 if what == "the gold answer" else MAX_QUESTION_CHARS)
        messages.append(str(e.value))
    for call in (lambda: whole(None, "seed", 0, 10), lambda: whole(2.5, "rollouts", 1, 512),
                 lambda: number("hot", "temperature", 0, 2)):
        with pytest.raises(InputError) as e:
            call()
        messages.append(str(e.value))
    assert_chinese(messages)
    assert i18n.message("the question is empty: type a question or pick a random problem", "zh") == \
        "问题 为空：请输入一个问题，或随机选一道题"


def test_the_sampling_lab_the_corpus_and_a_lesson_link_are_said_in_chinese(tmp_path, tiny_backend):
    from app.lessons import catalogue
    from engine import sampling_lab as L
    from engine.retrieval import load_folder
    from engine.sampling import SamplingConfig
    messages = []
    for field, value in (("temperature", 0), ("min_p", 2.0), ("top_p", 0), ("top_k", 0), ("top_n", 10**6)):
        with pytest.raises(ValueError) as e:
            L.LabConfig(**{field: value})
        messages.append(str(e.value))
    for call in (lambda: L.LabConfig().draw("nope"), lambda: L.check_order(["top_k"]),
                 lambda: catalogue.lesson("no-such-lesson"),
                 lambda: catalogue.page_of(catalogue.LESSONS[0].id, 999)):
        with pytest.raises(ValueError) as e:
            call()
        messages.append(str(e.value))
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "nowhere", tmp_path / "empty"):        # the SE tab's "your corpus folder"
        with pytest.raises(InputError) as e:
            load_folder(folder)
        messages.append(str(e.value))
    with pytest.raises(InputError) as e:                # a question longer than the model's context
        tiny_backend.generate([tiny_backend.render_prompt("7 + 8 = " * 400)], sampling=SamplingConfig(),
                              max_new_tokens=8, seed=0)
    messages.append(str(e.value))
    assert_chinese(messages)


def test_a_missing_or_broken_model_is_said_in_chinese(tmp_path, tiny_backend):
    from app.model_slot import ModelSlot
    from engine.models.registry import load_backend
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    messages = []
    for model in ("", str(tmp_path / "nowhere" / "model"), str(tmp_path / "empty"), str(broken)):
        with pytest.raises(ModelLoadError) as e:
            load_backend(model, threads=1)
        messages.append(str(e.value))
    slot = ModelSlot(tiny_backend, threads=1)
    with pytest.raises(ModelLoadError) as e:          # the header's "Load another model": the old one stays
        slot.swap(str(tmp_path / "nowhere" / "model"))
    messages.append(str(e.value))
    assert "still using" in messages[-1]
    assert_chinese(messages)


def test_a_corrupt_or_foreign_database_and_a_bad_session_file_are_said_in_chinese(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("create table notes (x)")
    messages = []
    for path in (garbage, foreign, tmp_path):
        with pytest.raises(StoreError) as e:
            Store(path)
        messages.append(str(e.value))
    with Store(tmp_path / "runs.db") as store:
        for call in (lambda: store.resolve("nope-not-an-id"),
                     lambda: store.import_session({"format": "something else"}),
                     lambda: store.import_session({"format": "thoughtscope-session", "version": 1})):
            with pytest.raises(StoreError) as e:
                call()
            messages.append(str(e.value))
    assert_chinese(messages)


def test_an_unknown_message_stays_english_and_nothing_raises(tmp_path, monkeypatch):
    for text in ("a message nobody wrote a template for", "", "{braces} and } alone", "x must be"):
        assert i18n.message(text, "zh") == text
    assert i18n.message(ValueError("rollouts must be from 1 to 32, got 0"), "en") == \
        "rollouts must be from 1 to 32, got 0"
    # a broken entry (a Chinese template naming a field the English lacks) gives the English
    broken = tmp_path / "zh_messages.json"
    broken.write_text(json.dumps({"{name} went wrong": "{nope} 出错"}), encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    i18n.message_templates.cache_clear()
    try:
        assert i18n.message("x went wrong", "zh") == "x went wrong"
    finally:
        monkeypatch.undo()
        i18n.message_templates.cache_clear()


def test_every_message_template_is_well_formed():
    """Each Chinese template names only its English fields; no key is a bare slot (which would
    swallow every message)."""
    import string
    entries = json.loads((i18n.LOCALES / "zh_messages.json").read_text(encoding="utf-8"))
    for english, zh in entries.items():
        if english.startswith("//"):
            continue
        names = {n for _, n, _, _ in string.Formatter().parse(english) if n}
        assert {n for _, n, _, _ in string.Formatter().parse(zh) if n} <= names, english
        assert re.sub(r"\{\w+\}", "", english).strip(), english


def test_the_app_boundary_shows_the_engine_message_in_the_request_language(tiny_backend, store):
    """A setting out of range in the Search form: the gr.Error the user sees is Chinese."""
    from app.recording import make_config
    with i18n.using("zh"), pytest.raises(gr.Error) as e:
        make_config("mcts", {"rollouts": 0})
    assert CJK.search(str(e.value.message)) and "rollouts" in str(e.value.message)
    with pytest.raises(gr.Error, match="rollouts must be"):
        make_config("mcts", {"rollouts": 0})


def test_rstars_recorded_reasons_are_said_in_chinese(store):
    """rStar's discriminator writes why it chose (or skipped) into its events, in English (a
    recorded run must replay byte for byte); the rStar panel says them through `message`."""
    from app.mcts_tab import rstar_panel
    from engine import events as E
    from engine.sample_runs import import_samples
    import_samples(store)
    said = []
    for row in store.list_sessions(method="rstar"):
        events = store.events(row["session_id"])
        said += [ev.reason for ev in events if isinstance(ev, E.CandidateTable)]
        said += [ev.skipped for ev in events if isinstance(ev, E.CandidatesCollected) and ev.skipped]
        with i18n.using("zh"):
            panel = rstar_panel({"session_id": row["session_id"], "events": events})
        assert not any(reason in panel for reason in said), panel
    assert said
    assert_chinese(said + ["the discriminator is off (generator alone): generator's most confident answer "
                           "(the discriminator did not run)",
                           "the generator is confident (confidence above 0.9): the only mutually consistent candidate"])


# ---- triage reasons ----------------------------------------------------------------------------------

def test_every_triage_reason_has_a_chinese_entry():
    zh = i18n.catalogue("zh")
    assert [code for code, english in T.REASONS.items() if english not in zh] == []


def test_a_real_runs_reason_is_said_in_chinese_with_its_numbers(store):
    from app.triage_view import reason_text, tally_markdown
    from engine.sample_runs import import_samples
    import_samples(store)
    told = 0
    for row in store.list_sessions():
        tree = store.tree(row["session_id"])
        if tree.run is None:
            continue
        report = T.triage(tree)
        with i18n.using("zh"):
            zh = reason_text(report)
            tally = tally_markdown({"session_id": row["session_id"], "events": store.events(row["session_id"])})
        assert CJK.search(zh), zh
        assert report.reason not in tally            # the English sentence is not what the view shows
        if report.gold is not None and report.status == T.WRONG:
            assert str(report.gold) in zh
        told += 1
    assert told >= 10
    # a reached-not-chosen reason with its parts
    why = T.Reason("reached_not_chosen", {"n": 2, "gold": "7", "rule": "majority", "answer": "9",
                                          "chosen_by": T.Reason("by_rules_and_scores",
                                                                {"rules": "most_visited", "scores": "majority"})})
    assert why.render() == ("2 terminals reached the gold answer 7; majority chose 9; would have chosen it: "
                            "rules most_visited; scores majority")
    zh = why.render(lambda s: i18n.translate(s, "zh"))
    assert zh == "有 2 个终止节点得到了标准答案 7；majority 选了 9；本会选中它的：规则 most_visited；评分 majority"
    assert T.Reason("never_reached", {"gold": "7"}).to_json() == {"code": "never_reached", "fields": {"gold": "7"}}
    with pytest.raises(ValueError, match="code must be one of"):
        T.Reason("no_such_reason")


# ---- table headers ------------------------------------------------------------------------------------

def test_every_table_header_has_a_chinese_entry_and_comes_per_page_load(tiny_backend, store):
    from app.main import build_app
    demo = build_app(tiny_backend, store)
    zh = i18n.catalogue("zh")
    tables = [b for b in demo.blocks.values() if isinstance(b, gr.Dataframe)]
    assert len(tables) >= 4
    missing = sorted({h for b in tables for h in b.headers if h not in zh})
    assert missing == []
    # a value made at page load, in that page's language (a fixed value keeps the English headers)
    assert [b.elem_id for b in tables if not b.load_event_to_attach] == []


def test_the_callbacks_send_headers_in_the_request_language(store):
    from app import evolve_tab, se_tab, sessions_tab, triage_view
    from engine.sample_runs import import_samples
    import_samples(store)
    with i18n.using("zh"):
        sessions = sessions_tab.session_table(store)
        failures = triage_view.failure_table(store)
        rounds = evolve_tab.show_run(store, None)[1]
        judged = se_tab.redraw([], "strict", 0.5, 1.2, "rao")[4]
    assert list(sessions.columns) == [i18n.translate(c, "zh") for c in sessions_tab.COLUMNS]
    assert list(sessions.columns)[0] == "会话 ID" and len(sessions) == len(sessions_tab.session_rows(store))
    assert sessions.values.tolist()[0][0] == sessions_tab.session_rows(store)[0][0]
    assert list(failures.columns) == [i18n.translate(c, "zh") for c in triage_view.FAILURE_COLUMNS]
    assert all(CJK.search(str(row[6])) and CJK.search(str(row[2])) for row in failures.values.tolist())
    assert len(failures) == len(triage_view.failure_rows(store)) > 0
    assert list(rounds.columns) == [i18n.translate(c, "zh") for c in evolve_tab.TABLE_COLUMNS]
    assert list(judged.columns) == [i18n.translate(c, "zh") for c in se_tab.COMPARISON_COLUMNS]
    assert list(sessions_tab.session_table(store).columns) == sessions_tab.COLUMNS      # English by default
    # None stays empty and a count stays a whole number (object columns, not floats with NaN)
    values = sessions_tab.session_table(store).values.tolist()
    assert all(isinstance(r[sessions_tab.COLUMNS.index("nodes")], int) for r in values)
