"""BM25 retrieval over a local corpus, for SUGAR's adaptive retrieval.

The corpus is the shipped fictional gazetteer (assets/retrieval/velmora.jsonl, written by
engine/retrieval/corpus.py) plus, optionally, a user's folder of ``.txt`` files (one passage per
blank-line-separated paragraph) and ``.jsonl`` files (one passage per line: ``{"text": ...}``,
optional ``"title"`` and ``"id"``). Ranking is Okapi BM25 from the ``bm25s`` library with its
English stop words and no stemmer (so nothing is downloaded and nothing extra is needed).

Also here: the question set with gold answers for the shipped corpus, and the two checks of an
open answer against its gold: `qa_strict` reads the answer the reply states and compares it (what
se and sugar count as right), `qa_contains` is the lenient "contains" metric of open-QA papers
(the gold's words anywhere in the reply: ``"Not 18 but 20."`` passes for 18), reported beside it.

Not here: deciding when to retrieve (engine/search/sugar.py).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from engine.answers import answer_key, read_answer
from engine.models.base import InputError
from engine.retrieval.corpus import CORPUS_FILE, QUESTIONS_FILE

STOPWORDS = "en"
USER_SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str
    source: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answer: str
    hops: int


def load_jsonl_passages(path: Path, source: str | None = None) -> list[Passage]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                raise InputError(f"{path}:{n}: a passage must be an object with a non-empty \"text\"")
            out.append(Passage(str(row.get("id", f"{path.stem}-{n}")), str(row.get("title", path.stem)),
                               row["text"].strip(), str(row.get("source", source or path.name))))
    return out


def load_txt_passages(path: Path) -> list[Passage]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
    return [Passage(f"{path.stem}-{i}", path.stem, p, path.name) for i, p in enumerate(paragraphs, start=1)]


def load_folder(folder: str | Path) -> list[Passage]:
    """Every passage in the ``.txt`` and ``.jsonl`` files of ``folder`` (recursively, sorted)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"corpus folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in USER_SUFFIXES)
    if not files:
        raise InputError(f"corpus folder {str(folder)!r} has no .txt or .jsonl files")
    out: list[Passage] = []
    for f in files:
        out += load_jsonl_passages(f) if f.suffix.lower() == ".jsonl" else load_txt_passages(f)
    return out


def shipped_passages() -> list[Passage]:
    return load_jsonl_passages(CORPUS_FILE)


def load_questions(path: Path = QUESTIONS_FILE) -> list[QAItem]:
    with open(path, encoding="utf-8") as f:
        return [QAItem(r["id"], r["question"], str(r["answer"]), int(r.get("hops", 1)))
                for r in map(json.loads, f) if r]


class BM25Index:
    """Okapi BM25 (bm25s, default k1 = 1.5, b = 0.75) over passages; `search` returns the top k."""

    def __init__(self, passages: Sequence[Passage]):
        import bm25s
        if not passages:
            raise InputError("the corpus is empty: nothing to retrieve from")
        self.passages = list(passages)
        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(self._tokens([f"{p.title}. {p.text}" for p in self.passages]), show_progress=False)

    def _tokens(self, texts: list[str]):
        return self._bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False)

    def search(self, query: str, k: int = 3) -> list[tuple[Passage, float]]:
        """The ``k`` best passages with their BM25 scores, best first; passages that share no
        term with the query (score 0) are left out."""
        if not query or not query.strip():
            raise InputError("the retrieval query is empty")
        k = max(1, min(int(k), len(self.passages)))
        tokens = self._tokens([query])
        if not tokens.ids[0]:             # only stop words
            return []
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
        hits = [(self.passages[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]
        # bm25s orders ties arbitrarily: make the order depend only on score and corpus position
        order = {id(p): i for i, p in enumerate(self.passages)}
        return sorted(hits, key=lambda h: (-round(h[1], 6), order[id(h[0])]))


def build_index(user_folder: str | Path | None = None, *, shipped: bool = True) -> BM25Index:
    """The index over the shipped corpus and, when given, a user's folder."""
    passages = shipped_passages() if shipped else []
    if user_folder:
        passages += load_folder(user_folder)
    return BM25Index(passages)


# ---- checking open answers ---------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_text(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def _golds(gold: str | Iterable[str]) -> list[str]:
    return gold.split("|") if isinstance(gold, str) else list(gold)


def qa_contains(answer: str | None, gold: str | Iterable[str]) -> bool:
    """The lenient "contains" check: right when a gold answer, normalised, appears as whole words
    anywhere in the normalised answer (so "Not 18 but 20." is right for 18); ``"7|seven"`` lists
    alternatives."""
    if not answer:
        return False
    have = f" {normalize_text(answer)} "
    return any(normalize_text(g) and f" {normalize_text(g)} " in have for g in _golds(gold))


_SENTENCE_END = re.compile(r"(?<=[^\d\s])[.!?](?=\s|$)")      # not the point in "3.5"


def stated_answer(text: str | None) -> str | None:
    """What an open reply states as its answer: the last answer statement's (engine.answers:
    ``"The answer is Paris."``, ``"Answer: Paris"``, ``\\boxed{Paris}``), else its first sentence
    (``"Paris, I think. Or Lyon."`` -> ``"Paris, I think"``)."""
    if not text or not text.strip():
        return None
    stated = read_answer(text)
    if stated is not None:
        return stated
    return _SENTENCE_END.split(text.strip().split("\n")[0], maxsplit=1)[0].strip() or None


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
# the reference semantic-entropy code (Farquhar et al. 2024) counts an open answer right at a
# SQuAD token F1 of at least 50 % with a gold answer
STRICT_F1 = 0.5


def _number_key(text: str) -> str | None:
    """``answer_key`` of ``text`` when it is one number as written (``"1,065"``, ``"-3.5"``), else None."""
    t = text.strip().rstrip(".")
    return answer_key(t.replace(",", "")) if _NUMBER.fullmatch(t) else None


def token_f1(answer: str, gold: str) -> float:
    """SQuAD's token F1 of two texts after `normalize_text`: ``token_f1("Maud Tinsley did", "Maud
    Tinsley")`` is 2 * (2/3 * 1) / (2/3 + 1) = 0.8."""
    a, g = normalize_text(answer).split(), normalize_text(gold).split()
    common = sum(min(a.count(w), g.count(w)) for w in set(a) & set(g))
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_strict(answer: str | None, gold: str | Iterable[str], question: str = "") -> bool:
    """The strict check: the answer the reply states (`stated_answer`), less what ``question``
    already says, is a gold answer. Words and numbers of the question are context, not answer,
    so "The capital of Japan is Tokyo." states "Tokyo" for "What is the capital of Japan?" —
    unless the question names the gold itself (a choice: "Is it 18 or 20?"), where nothing is left
    out. Then, for a number gold, every number left is that number by value ("It is 18." right;
    "Not 18 but 20.", "17210" wrong); for a text gold, token F1 with it at least `STRICT_F1`
    ("Maud Tinsley did." right, "Not Paris but Lyon." wrong)."""
    stated = stated_answer(answer)
    if not stated:
        return False
    asked = f" {normalize_text(question)} "
    asked_numbers = {answer_key(m.replace(",", "")) for m in _NUMBER.findall(question)}
    for g in _golds(gold):
        key = _number_key(g)
        if key is not None:
            context = set() if key in asked_numbers else asked_numbers
            named = [k for k in (answer_key(m.replace(",", "")) for m in _NUMBER.findall(stated)) if k not in context]
            if named and all(k == key for k in named):
                return True
            continue
        g_norm = normalize_text(g)
        if not g_norm:
            continue
        context = set() if f" {g_norm} " in asked else set(asked.split())
        left = [w for w in normalize_text(stated).split() if w not in context]
        if token_f1(" ".join(left), g) >= STRICT_F1:
            return True
    return False
