"""Semantic entropy: clustering with deterministic judges (transitivity surprises included), each
estimator on hand-computed examples, our estimators against the published formulas, the three
judges (math-verify, an NLI model built from a config, the language model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.models.base import ModelLoadError
from engine.scoring import semantic_entropy as S
from engine.scoring.semantic_entropy import CONTRADICTION as C, ENTAILMENT as ENT, NEUTRAL as NEU


class TableJudge:
    """A deterministic judge from a table of one-way verdicts; missing pairs are neutral.
    Counts its calls."""

    name, note = "table", "test table"

    def __init__(self, table: dict[tuple[str, str], str]):
        self.table, self.calls = table, []

    def check(self, premise, hypothesis, question=""):
        self.calls.append((premise, hypothesis))
        return self.table.get((premise, hypothesis), NEU)


def both_ways(*pairs, verdict=ENT):
    table = {}
    for a, b in pairs:
        table[(a, b)] = table[(b, a)] = verdict
    return table


def run_cluster(answers, table, mode="strict"):
    judge = TableJudge(table)
    return S.cluster(answers, S.VerdictCache(judge, "q"), mode), judge


# ---- clustering -----------------------------------------------------------------------------

def test_paraphrases_join_and_a_contradiction_opens_a_cluster():
    table = {**both_ways(("Paris", "It is Paris")), **both_ways(("Paris", "Lyon"), ("It is Paris", "Lyon"),
                                                                 verdict=C)}
    c, _ = run_cluster(["Paris", "Lyon", "It is Paris", "Paris"], table)
    assert c.ids == [0, 1, 0, 0]
    assert c.clusters == [[0, 2, 3], [1]]


def test_each_answer_is_compared_with_the_first_member_of_each_cluster_only():
    # B ≡ A and C ≡ B, but C ≢ A: C never meets B (A represents the cluster), so C is alone
    c, judge = run_cluster(["A", "B", "C"], both_ways(("A", "B"), ("B", "C")))
    assert c.ids == [0, 0, 1]
    assert ("C", "B") not in judge.calls and ("C", "A") in judge.calls


def test_order_decides_under_a_non_transitive_judge():
    # same judge, different sampling order: B first makes B the representative, and A and C join it
    c, _ = run_cluster(["B", "A", "C"], both_ways(("A", "B"), ("B", "C")))
    assert c.ids == [0, 0, 0]


def test_an_answer_equivalent_to_two_clusters_joins_the_first_made():
    # C ≡ A and C ≡ B, A ≢ B: C goes to A's cluster (made first), never to B's
    c, _ = run_cluster(["A", "B", "C"], {**both_ways(("A", "C"), ("B", "C")), **both_ways(("A", "B"), verdict=C)})
    assert c.ids == [0, 1, 0]
    joined = [x for x in c.comparisons if x.a == 2]
    assert [(x.b, x.equivalent) for x in joined] == [(0, True)]          # stopped at the first match


def test_one_way_entailment_is_not_equivalence_under_strict_but_is_under_lenient():
    # "Paris, France" entails "Paris"; the other way the judge says neutral
    table = {("Paris, France", "Paris"): ENT}
    strict, _ = run_cluster(["Paris", "Paris, France"], table, "strict")
    lenient, _ = run_cluster(["Paris", "Paris, France"], table, "lenient")
    assert strict.ids == [0, 1] and lenient.ids == [0, 0]


def test_lenient_still_needs_one_entailment_and_no_contradiction():
    assert not S.equivalent(NEU, NEU, "lenient")          # both neutral: not the same meaning
    assert not S.equivalent(ENT, C, "lenient")
    assert S.equivalent(ENT, NEU, "lenient") and S.equivalent(NEU, ENT, "lenient")
    assert S.equivalent(ENT, ENT, "strict") and not S.equivalent(ENT, NEU, "strict")
    with pytest.raises(ValueError, match="mode must be one of"):
        S.equivalent(ENT, ENT, "loose")


def test_identical_texts_never_reach_the_judge_and_verdicts_are_cached():
    judge = TableJudge(both_ways(("x", "y")))
    cache = S.VerdictCache(judge, "q")
    c = S.cluster(["x", "x", "y", "x"], cache)
    assert c.ids == [0, 0, 0, 0]
    assert judge.calls == [("y", "x"), ("x", "y")]
    S.cluster(["x", "y"], cache, "lenient")                   # the second mode reuses both verdicts
    assert len(judge.calls) == 2
    assert [x.source for x in c.comparisons] == ["identical", "judge", "identical"]


def test_a_judge_answering_outside_the_three_verdicts_is_an_error():
    class Bad(TableJudge):
        def check(self, premise, hypothesis, question=""):
            return "yes"
    with pytest.raises(ValueError, match="returned 'yes'"):
        S.cluster(["a", "b"], S.VerdictCache(Bad({}), "q"))


# ---- estimators on hand-computed examples -----------------------------------------------------

def test_discrete_entropy_of_cluster_frequencies():
    # clusters of sizes 2, 1, 1 out of 4: -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2
    assert S.discrete_entropy([0, 1, 0, 2]) == pytest.approx(1.5 * math.log(2))
    assert S.discrete_entropy([0, 0, 0]) == 0.0
    assert S.discrete_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))


def test_rao_entropy_weighs_clusters_by_normalised_likelihood():
    # p ∝ (1/2, 1/4, 1/4) over three answers; answers 1 and 2 share a cluster: p(C) = (1/2, 1/2)
    ll = [math.log(0.5), math.log(0.25), math.log(0.25)]
    assert S.cluster_masses([0, 1, 1], ll) == pytest.approx([0.5, 0.5])
    assert S.rao_entropy([0, 1, 1], ll) == pytest.approx(math.log(2))
    # the normalisation makes a constant shift of every log-likelihood irrelevant
    assert S.rao_entropy([0, 1, 1], [x - 7 for x in ll]) == pytest.approx(math.log(2))
    assert S.rao_entropy([0, 0, 0], ll) == 0.0


def test_mc_2023_averages_minus_log_cluster_probability_over_clusters():
    # unnormalised p = (0.2, 0.1, 0.3); clusters {0, 1} and {2}: -(ln 0.3 + ln 0.3) / 2 = -ln 0.3
    ll = [math.log(0.2), math.log(0.1), math.log(0.3)]
    assert S.mc_entropy_2023([0, 0, 1], ll) == pytest.approx(-math.log(0.3))
    # duplicates add up: one cluster of ten answers of p = 0.5 gives -ln 5 < 0
    assert S.mc_entropy_2023([0] * 10, [math.log(0.5)] * 10) == pytest.approx(-math.log(5))


def test_naive_entropy_is_the_mean_negative_log_likelihood():
    assert S.naive_entropy([-1.0, -2.0, -3.0]) == pytest.approx(2.0)


def test_sequence_loglik_mean_or_sum():
    assert S.sequence_loglik([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)
    assert S.sequence_loglik([-1.0, -2.0, -3.0], "sum") == pytest.approx(-6.0)
    with pytest.raises(ValueError, match="loglik must be one of"):
        S.sequence_loglik([-1.0], "max")


def test_semantic_entropy_sees_through_paraphrase_and_naive_entropy_does_not():
    # five wordings of one answer: five distinct strings, one meaning
    ids, ll = [0] * 5, [-1.2, -0.8, -1.5, -1.0, -0.9]
    e = S.entropies(ids, ll)
    assert e["discrete"] == 0.0 and e["rao"] == 0.0
    assert e["naive"] == pytest.approx(1.08)


# ---- reference equality with the published formulas ------------------------------------------------

def _published_discrete(ids):
    # Nature 2024 (discrete variant): categorical distribution from cluster counts, entropy of it
    p = np.bincount(ids) / len(ids)
    return float(-(p * np.log(p)).sum())


def _published_rao(ids, ll):
    # Nature 2024, eq. for SE: log p(C) = logsumexp over members of (ll_i - logsumexp_j ll_j),
    # SE = -sum_C p(C) log p(C), computed in log space
    ll = np.asarray(ll, dtype=np.float64)
    log_norm = ll - np.logaddexp.reduce(ll)
    log_pc = np.array([np.logaddexp.reduce(log_norm[np.asarray(ids) == c]) for c in sorted(set(ids))])
    return float(-(np.exp(log_pc) * log_pc).sum())


def _published_mc_2023(ids, ll):
    # Kuhn et al. 2023, eq. (3): SE ≈ -(1/|C|) sum_i log p(C_i | x), p(C) = sum of member p(s | x)
    ll = np.asarray(ll, dtype=np.float64)
    per = [np.logaddexp.reduce(ll[np.asarray(ids) == c]) for c in sorted(set(ids))]
    return float(-np.mean(per))


@pytest.mark.parametrize("seed", range(8))
def test_our_estimators_equal_the_published_formulas(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    ids = rng.integers(0, 4, n)
    ids = [int(x) for x in np.unique(ids, return_inverse=True)[1]]        # ids 0..K-1 with no gaps
    ll = [float(x) for x in rng.normal(-2.0, 1.5, n)]
    assert S.discrete_entropy(ids) == pytest.approx(_published_discrete(ids), abs=1e-12)
    assert S.rao_entropy(ids, ll) == pytest.approx(_published_rao(ids, ll), abs=1e-12)
    assert S.mc_entropy_2023(ids, ll) == pytest.approx(_published_mc_2023(ids, ll), abs=1e-12)
    assert sum(S.cluster_masses(ids, ll)) == pytest.approx(1.0)


def test_auroc_counts_ties_half_and_needs_both_classes():
    assert S.auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert S.auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert S.auroc([0.5, 0.5], [True, False]) == 0.5
    assert S.auroc([0.1, 0.2], [True, True]) is None


# ---- judges ---------------------------------------------------------------------------------------

def test_math_judge_reads_final_answers_with_math_verify():
    j = S.MathJudge()
    a = "Step 1: 2 + 2 = 4\nThe answer is 4."
    assert j.check(a, "Step 1: 1 * 4 = 4\nThe answer is 4.") == ENT           # different work, same answer
    assert j.check(a, "The answer is 1,065.") == C
    assert j.check("The answer is 1/2.", "The answer is 0.5.") == ENT          # equal values, other forms
    assert j.check(a, "Step 1: 2 + 2 = 4") == NEU                               # no answer yet


def _tiny_nli(path, labels):
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig
    from conftest import _tokenizer
    tok = _tokenizer()
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=256, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_nli_judge_loads_a_sequence_classification_model_from_a_folder(tmp_path):
    # a random-initialised BERT with MNLI's labels: the verdicts are arbitrary but must be verdicts,
    # deterministic, and the question conditions both texts
    judge = S.NLIJudge(_tiny_nli(tmp_path / "nli", ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]))
    v = judge.check("Mia has 37 apples.", "Mia has 36 apples.", "How many apples?")
    assert v in S.VERDICTS and v == judge.check("Mia has 37 apples.", "Mia has 36 apples.", "How many apples?")
    c = S.cluster(["Mia has 37 apples.", "Mia has 36 apples.", "37"], S.VerdictCache(judge, "How many?"))
    assert len(c.ids) == 3


def test_nli_judge_errors_are_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load NLI model"):
        S.NLIJudge(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="is not an NLI model"):
        S.NLIJudge(_tiny_nli(tmp_path / "sentiment", ["negative", "positive"]))
    with pytest.raises(ModelLoadError, match="needs a model"):
        S.NLIJudge("  ")


def test_lm_judge_reads_the_verdict_words_from_the_whole_distribution(tiny_backend):
    judge = S.LMJudge(tiny_backend)
    assert judge.weak and "weak judge" in judge.note
    # tokens that begin a verdict word add up: 0.3 + 0.2 for entailment beats 0.4 for contradiction;
    # tokens that begin none ("The", "e") do not count
    tokens, probs = ["Cont", "Ent", "ent", "The", "e", "Neutral"], [0.4, 0.3, 0.2, 0.05, 0.03, 0.02]
    assert judge.read(tokens, probs) == ENT
    assert judge.read(tokens, [0.4, 0.1, 0.1, 0.3, 0.05, 0.05]) == C
    # on a real (random) model: a verdict, the same every time
    v = judge.check("The answer is 4.", "The answer is 5.", "What is 2 + 2?")
    assert v in S.VERDICTS and v == judge.check("The answer is 4.", "The answer is 5.", "What is 2 + 2?")
