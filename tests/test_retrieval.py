"""BM25 retrieval: ranking sanity on hand-written passages, the shipped fictional corpus and its
questions (consistent with their generator, each answerable from the corpus), user folders."""

from __future__ import annotations

import json

import pytest

from engine import retrieval as R
from engine.retrieval import corpus as RC
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
        assert q.hops == 0 or R.qa_contains(text, q.answer), q       # hops 0: general knowledge


def test_single_hop_questions_retrieve_their_answer_in_the_top_three():
    ix = R.build_index()
    single = [q for q in R.load_questions() if q.hops == 1]
    found = sum(any(R.qa_contains(p.text, q.answer) for p, _ in ix.search(q.question, 3)) for q in single)
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


def test_the_contains_check_finds_the_gold_as_normalised_whole_words_anywhere():
    assert R.qa_contains("It was founded by Maud Tinsley in 1721.", "Maud Tinsley")
    assert R.qa_contains("THE BRINDLE BRIDGE!", "Brindle Bridge")
    assert not R.qa_contains("Maud Tinsleyson founded it.", "Maud Tinsley")      # whole words only
    assert not R.qa_contains("It was 17210.", "1721")
    assert not R.qa_contains(None, "1721") and not R.qa_contains("", "1721")
    assert R.qa_contains("A week has seven days.", "7|seven") and R.qa_contains("7 days", "7|seven")
    assert R.qa_contains("Not 18 but 20.", "18")           # lenient: the gold is there, though not the answer


@pytest.mark.parametrize("reply, gold, right", [
    ("Not 18 but 20.", "18", False),                      # names 18, states 20: contains passes it, strict not
    ("It is 18.", "18", True),
    ("18 apples.", "18", True),
    ("It was 17210.", "1721", False),
    ("The freezing point is 0 degrees.", "0", True),      # every number it names is the gold
    ("Between 18 and 20.", "18", False),
    ("I think 7. The answer is 8.", "8", True),           # a statement wins over the first sentence
    ("The answer is 7, not 8.", "8", False),
    ("Maud Tinsley did.", "Maud Tinsley", True),          # token F1 0.8 >= 0.5
    ("Not Paris but Lyon.", "Paris", False),              # token F1 0.4
    ("Paris, I think. Or Lyon.", "Paris", True),          # the first sentence only: F1 0.5
    ("It was founded by Maud Tinsley in 1721 with help.", "Maud Tinsley", False),   # too much else: F1 0.33
    ("Seven.", "7|seven", True),                          # alternatives
    ("", "18", False), (None, "18", False),
])
def test_the_strict_check_compares_the_stated_answer(reply, gold, right):
    assert R.qa_strict(reply, gold) is right


@pytest.mark.parametrize("reply, gold, question, right", [
    # what the question already says is no part of the answer
    ("The capital of Japan is Tokyo.", "Tokyo", "What is the capital of Japan?", True),
    ("The capital of Japan is Tokyo.", "Tokyo", "", False),                      # F1 0.33 without the question
    ("2 weeks have 14 days.", "14", "How many days are in 2 weeks?", True),
    ("2 weeks have 15 days.", "14", "How many days are in 2 weeks?", False),
    # ... unless the question names the gold: a choice, whose words are the answers
    ("Maud Tinsley.", "Maud Tinsley", "Who founded it, Maud Tinsley or Ada Crane?", True),
    ("Ada Crane founded it.", "Maud Tinsley", "Who founded it, Maud Tinsley or Ada Crane?", False),
    ("Not 18 but 20.", "18", "Is it 18 or 20?", False),
])
def test_the_strict_check_leaves_out_what_the_question_says(reply, gold, question, right):
    assert R.qa_strict(reply, gold, question) is right


def test_token_f1_as_squad_computes_it():
    assert R.token_f1("Maud Tinsley did", "Maud Tinsley") == pytest.approx(0.8)
    assert R.token_f1("the Brindle Bridge!", "Brindle Bridge") == 1.0      # articles and punctuation dropped
    assert R.token_f1("Lyon", "Paris") == 0.0
