"""Sampler stages on hand-written distributions and against transformers' own warpers."""

import math

import pytest
import torch
from transformers.generation.logits_process import (MinPLogitsWarper, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from engine import sampling as S

INF = float("-inf")


def logits_of(probs):
    return torch.log(torch.tensor([probs], dtype=torch.float32))


def kept(logits):
    return (logits[0] > INF).nonzero().flatten().tolist()


def test_min_p_keeps_tokens_above_p_base_times_p_max():
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    before = x.clone()
    # threshold 0.2 * 0.5 = 0.1: 0.5, 0.3, 0.15 survive; 0.05 goes
    assert kept(S.min_p(x, 0.2)) == [0, 1, 2]
    # threshold 0.7 * 0.5 = 0.35: only the top token survives
    assert kept(S.min_p(x, 0.7)) == [0]
    # a flat distribution keeps everything even at a high p_base
    assert kept(S.min_p(logits_of([0.25] * 4), 0.9)) == [0, 1, 2, 3]
    assert torch.equal(x, before)                       # input unchanged


def test_top_p_keeps_smallest_set_reaching_p():
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    assert kept(S.top_p(x, 0.5)) == [0]                 # 0.5 alone reaches 0.5
    assert kept(S.top_p(x, 0.8)) == [0, 1]              # 0.5 + 0.3
    assert kept(S.top_p(x, 0.81)) == [0, 1, 2]          # needs the third
    assert kept(S.top_p(x, 1.0)) == [0, 1, 2, 3]


def test_top_k_and_temperature():
    x = logits_of([0.5, 0.3, 0.15, 0.05])
    assert kept(S.top_k(x, 2)) == [0, 1]
    assert kept(S.top_k(x, 0)) == [0, 1, 2, 3]          # 0 = off
    t = S.temperature(x, 2.0)
    assert torch.allclose(t, x / 2)


def test_order_changes_the_pool():
    # p = [0.4, 0.3, 0.2, 0.1]. min-p 0.3 keeps p >= 0.12 at T=1, but at T=3 the
    # distribution flattens so more survive: temperature-first keeps all four, min-p-first three.
    x = logits_of([0.4, 0.3, 0.2, 0.1])
    first = S.SamplingConfig(temperature=3.0, min_p=0.3, order=S.TRANSFORMERS_ORDER)
    last = S.SamplingConfig(temperature=3.0, min_p=0.3, order=S.LLAMA_CPP_ORDER)
    assert kept(S.apply_chain(x, first)) == [0, 1, 2, 3]
    assert kept(S.apply_chain(x, last)) == [0, 1, 2]


@pytest.mark.parametrize("seed", range(5))
def test_each_stage_equals_the_transformers_warper(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 300, generator=g) * 3
    ids = torch.zeros(4, 1, dtype=torch.long)
    cases = [
        (S.min_p(x, 0.1), MinPLogitsWarper(0.1)(ids, x.clone())),
        (S.min_p(x, 0.05), MinPLogitsWarper(0.05)(ids, x.clone())),
        (S.top_p(x, 0.9), TopPLogitsWarper(0.9)(ids, x.clone())),
        (S.top_p(x, 0.5), TopPLogitsWarper(0.5)(ids, x.clone())),
        (S.top_k(x, 20), TopKLogitsWarper(20)(ids, x.clone())),
        (S.temperature(x, 0.7), TemperatureLogitsWarper(0.7)(ids, x.clone())),
    ]
    for ours, theirs in cases:
        assert torch.equal(ours == INF, theirs == INF)
        assert torch.allclose(ours[ours > INF], theirs[theirs > INF], atol=1e-6)


def test_chain_in_transformers_order_equals_transformers_warpers_in_sequence():
    x = torch.randn(2, 200, generator=torch.Generator().manual_seed(9)) * 2
    ids = torch.zeros(2, 1, dtype=torch.long)
    cfg = S.SamplingConfig(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05)
    theirs = x.clone()
    for w in (TemperatureLogitsWarper(0.8), TopKLogitsWarper(40), TopPLogitsWarper(0.9), MinPLogitsWarper(0.05)):
        theirs = w(ids, theirs)
    ours = S.apply_chain(x, cfg)
    assert torch.equal(ours == INF, theirs == INF)
    assert torch.allclose(ours[ours > INF], theirs[theirs > INF], atol=1e-6)


@pytest.mark.parametrize("field,value", [
    ("temperature", -1.0), ("temperature", math.nan), ("temperature", math.inf),
    ("top_k", -3), ("top_k", 2.5), ("top_p", 0.0), ("top_p", 1.5), ("min_p", -0.1),
    ("min_p", 2.0), ("order", ("temperature", "top_k")),
])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        S.SamplingConfig(**{field: value})


def test_config_json_round_trip():
    cfg = S.SamplingConfig(temperature=0.7, top_k=5, top_p=0.9, min_p=0.1, order=S.VLLM_ORDER)
    assert S.SamplingConfig.from_json(cfg.to_json()) == cfg


# ---- each engine's order on hand-computed pools ----------------------------------------------
# p = [0.4, 0.3, 0.15, 0.1, 0.05], temperature 2, top-p 0.75, min-p 0.4, top-k off.
# At T=2, p ∝ sqrt(p) = [0.3001, 0.2599, 0.1838, 0.1501, 0.1061].
HAND = dict(temperature=2.0, top_k=0, top_p=0.75, min_p=0.4)


def test_transformers_order_on_hand_computed_pools():
    x = logits_of([0.4, 0.3, 0.15, 0.1, 0.05])
    out = S.apply_chain(x, S.SamplingConfig(**HAND, order=S.ORDERS["transformers"]))
    # top-p at T=2: dropping 0.1061 leaves 0.894 >= 0.75, dropping 0.1501 too leaves 0.744 < 0.75
    # min-p: threshold 0.4 * 0.3001 = 0.120 keeps all four
    assert kept(out) == [0, 1, 2, 3]


def test_vllm_order_on_hand_computed_pools():
    x = logits_of([0.4, 0.3, 0.15, 0.1, 0.05])
    out = S.apply_chain(x, S.SamplingConfig(**HAND, order=S.ORDERS["vllm"]))
    # min-p first at T=2: threshold 0.120 drops 0.1061; renormalised [0.336, 0.291, 0.206, 0.168]
    # top-p 0.75 on those: without 0.168 the rest hold 0.832 >= 0.75, without 0.206 too 0.627
    assert kept(out) == [0, 1, 2]


def test_llama_cpp_order_on_hand_computed_pools():
    x = logits_of([0.4, 0.3, 0.15, 0.1, 0.05])
    out = S.apply_chain(x, S.SamplingConfig(**HAND, order=S.ORDERS["llama.cpp"]))
    # top-p at T=1: 0.4 + 0.3 + 0.15 = 0.85 >= 0.75 (0.7 is not): keeps three
    # min-p at T=1: threshold 0.4 * 0.4 = 0.16 drops 0.15; temperature last only reshapes
    assert kept(out) == [0, 1]
    probs = out.softmax(-1)[0, :2]
    expected = torch.tensor([0.4 ** 0.5, 0.3 ** 0.5])
    assert torch.allclose(probs, expected / expected.sum(), atol=1e-6)      # 0.5359, 0.4641


def test_orders_are_the_documented_ones():
    # transformers generation/utils.py _get_logits_processor; vLLM v1/sample/sampler.py Sampler.sample;
    # llama.cpp common/common.h common_params_sampling::samplers (docs/sampling.md cites them)
    assert S.ORDERS == {"transformers": ("temperature", "top_k", "top_p", "min_p"),
                        "vllm": ("temperature", "min_p", "top_k", "top_p"),
                        "llama.cpp": ("top_k", "top_p", "min_p", "temperature")}


@pytest.mark.parametrize("engine,warpers", [
    ("vllm", lambda c: [TemperatureLogitsWarper(c.temperature), MinPLogitsWarper(c.min_p),
                        TopKLogitsWarper(c.top_k), TopPLogitsWarper(c.top_p)]),
    ("llama.cpp", lambda c: [TopKLogitsWarper(c.top_k), TopPLogitsWarper(c.top_p), MinPLogitsWarper(c.min_p),
                             TemperatureLogitsWarper(c.temperature)]),
])
def test_each_order_equals_transformers_warpers_composed_in_that_order(engine, warpers):
    x = torch.randn(3, 250, generator=torch.Generator().manual_seed(4)) * 2.5
    ids = torch.zeros(3, 1, dtype=torch.long)
    cfg = S.SamplingConfig(temperature=1.7, top_k=60, top_p=0.9, min_p=0.08, order=S.ORDERS[engine])
    theirs = x.clone()
    for w in warpers(cfg):
        theirs = w(ids, theirs)
    ours = S.apply_chain(x, cfg)
    assert torch.equal(ours == INF, theirs == INF)
    assert torch.allclose(ours[ours > INF], theirs[theirs > INF], atol=1e-6)


@pytest.mark.parametrize("fn", [lambda x: S.temperature(x, 0.5), lambda x: S.top_k(x, 3),
                                lambda x: S.top_p(x, 0.7), lambda x: S.min_p(x, 0.3),
                                lambda x: S.apply_chain(x, S.SamplingConfig(temperature=2, top_k=5, top_p=0.8,
                                                                            min_p=0.1, order=S.LLAMA_CPP_ORDER)),
                                lambda x: S.chain_trace(x, S.SamplingConfig(min_p=0.2))])
def test_no_stage_modifies_its_input(fn):
    x = torch.randn(2, 40, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    out = fn(x)
    assert torch.equal(x, before)
    outs = [t for _, t in out] if isinstance(out, list) else [out]
    assert all(o.data_ptr() != x.data_ptr() for o in outs)
