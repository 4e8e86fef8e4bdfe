"""BM25 retrieval: ranking sanity on hand-written passages, the shipped fictional corpus and its
questions (consistent with their generator, each answerable from the corpus), user folders."""

from __future__ import annotations

import json

import pytest

from engine import retrieval as R
from engine import retrieval_corpus as RC
from engine.models.base import InputError

DOCS = [R.Passage("d0", "Bakery", "The bakery on Cinder Street sells seaweed bread every morning.", "t"),
        R.Passage("d1", "Harbour", "The harbour ferry leaves at dawn and returns at dusk.", "t"),
        R.Passage("d2", "Ferry", "The ferry pilot of the harbour ferry is Nerys Hale. The ferry is blue.", "t"),
        R.Passage("d3", "Clock", "The clock tower clock runs eleven minutes slow.", "t")]


def test_the_passage_sharing_the_rare_terms_ranks_first():
    ix = R.BM25Index(DOCS)
    hits = ix.search("who pilots the harbour ferry", k=4)
    assert [p.id for p, _ in hits][:2] == ["d2", "d1"]            # "ferry" three times beats once
    assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))      # best first
    assert ix.search("seaweed bread")[0][0].id == "d0"


def test_passages_with_no_query_term_are_left_out():
    ix = R.BM25Index(DOCS)
    assert {p.id for p, _ in ix.search("clock", k=4)} == {"d3"}
    assert ix.search("xylophone zeppelin") == []
    assert ix.search("the of and") == []                          # stop words only


def test_empty_query_and_empty_corpus_are_input_errors():
    with pytest.raises(InputError, match="query is empty"):
        R.BM25Index(DOCS).search("  ")
    with pytest.raises(InputError, match="corpus is empty"):
        R.BM25Index([])


def test_the_shipped_files_are_what_the_generator_writes(tmp_path):
    RC.write(tmp_path)
    for name in (RC.CORPUS_FILE.name, RC.QUESTIONS_FILE.name):
        assert (tmp_path / name).read_text() == (RC.CORPUS_FILE.parent / name).read_text(), name


def test_the_corpus_is_labelled_fictional_and_every_velmora_answer_is_in_it():
    passages = R.shipped_passages()
    assert len(passages) >= 200
    assert all("fictional" in p.source for p in passages)
    text = " ".join(p.text for p in passages)
    questions = R.load_questions()
    assert len(questions) >= 40 and {q.hops for q in questions} == {0, 1, 2}
    for q in questions:
        assert q.hops == 0 or R.qa_correct(text, q.answer), q       # hops 0: general knowledge


def test_single_hop_questions_retrieve_their_answer_in_the_top_three():
    ix = R.build_index()
    single = [q for q in R.load_questions() if q.hops == 1]
    found = sum(any(R.qa_correct(p.text, q.answer) for p, _ in ix.search(q.question, 3)) for q in single)
    assert found / len(single) >= 0.8


def test_a_user_folder_adds_txt_paragraphs_and_jsonl_lines(tmp_path):
    (tmp_path / "notes.txt").write_text("Zorblat is the capital of Quoxia.\n\nQuoxia exports glass marbles.\n")
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "facts.jsonl").write_text(json.dumps({"text": "The Quoxian flag is teal.", "title": "Flag"}) + "\n\n")
    (tmp_path / "ignored.csv").write_text("a,b\n")
    got = R.load_folder(tmp_path)
    assert [p.text for p in got] == ["The Quoxian flag is teal.", "Zorblat is the capital of Quoxia.",
                                     "Quoxia exports glass marbles."]
    ix = R.build_index(tmp_path)
    assert len(ix.passages) == len(R.shipped_passages()) + 3
    assert ix.search("capital of Quoxia")[0][0].text == "Zorblat is the capital of Quoxia."


def test_bad_user_folders_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        R.load_folder(tmp_path / "missing")
    with pytest.raises(InputError, match="no .txt or .jsonl"):
        R.load_folder(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not JSON"):
        R.load_folder(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"title": "no text"}\n')
    with pytest.raises(InputError, match="non-empty \"text\""):
        R.load_folder(tmp_path)


def test_open_answers_are_checked_by_normalised_whole_words():
    assert R.qa_correct("It was founded by Maud Tinsley in 1721.", "Maud Tinsley")
    assert R.qa_correct("THE BRINDLE BRIDGE!", "Brindle Bridge")
    assert not R.qa_correct("Maud Tinsleyson founded it.", "Maud Tinsley")      # whole words only
    assert not R.qa_correct("It was 17210.", "1721")
    assert not R.qa_correct(None, "1721") and not R.qa_correct("", "1721")
    assert R.qa_correct("A week has seven days.", "7|seven") and R.qa_correct("7 days", "7|seven")
