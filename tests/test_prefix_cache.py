"""The prefix cache: exact computed-vs-reused counts for a hand-built tree of calls, the same
tokens with and without it, and a memory ceiling that evicts least recently used paths."""

import os

import pytest
import torch

from engine.models.base import StopSpec
from engine.models.prefix_cache import PrefixCache
from engine.models.registry import DEFAULT_MODEL, load_backend
from engine.models.transformers_backend import TransformersBackend
from engine.sampling import GREEDY, SamplingConfig
from engine.search import METHODS

QUESTION = "Mia has 23 apples. She buys 14 more apples. Then she eats 5 apples. How many apples does Mia have now?"
OTHER = "Leo has 8 boxes of pens. Each box holds 6 pens. How many pens does Leo have?"
STEP = StopSpec(("\n",), eos=False)
WARM = SamplingConfig(temperature=0.8)


def lcp(a, b) -> int:
    return len(os.path.commonprefix([list(a), list(b)]))


@pytest.fixture(scope="module")
def cached_embedded():
    return load_backend(DEFAULT_MODEL, prefix_cache_mb=64)


def counts(gens):
    return [(g.prompt_tokens, g.reused_tokens) for g in gens]


def test_hand_built_tree_counts_every_prompt_token_computed_or_reused_exactly(cached_embedded):
    b = cached_embedded
    b.reset_prefix_cache()
    root = b.render_prompt(QUESTION) + b.solution_prefix()
    r = b.encode(root)
    # expanding the root: three equal prompts, the prompt is computed once for all three
    kids = b.generate([root] * 3, sampling=WARM, stop=STEP, max_new_tokens=40, seed=1)
    assert counts(kids) == [(len(r), 0), (0, len(r)), (0, len(r))]
    # expanding each child: its prompt is exactly a cached sequence (prompt + the child's
    # tokens) whose next-token logits are kept, so nothing is computed
    texts = [root + g.text for g in kids]
    for t, g in zip(texts, kids):
        assert b.encode(t) == r + g.token_ids       # the format re-tokenises as generated
    grand = b.generate(texts, sampling=WARM, stop=STEP, max_new_tokens=40, seed=2)
    assert counts(grand) == [(0, len(r) + len(g.tokens)) for g in kids]
    # the root prompt again: cached, but its logits are not (it ends inside a cached path),
    # so its last token is recomputed; a new question shares only its opening tokens;
    # a grandchild's prompt is a full hit
    other = b.render_prompt(OTHER) + b.solution_prefix()
    deep = texts[0] + grand[0].text
    o, d = b.encode(other), b.encode(deep)
    assert d == r + kids[0].token_ids + grand[0].token_ids
    mixed = b.generate([other, root, deep, other], sampling=WARM, stop=STEP, max_new_tokens=40, seed=3)
    assert counts(mixed) == [(len(o) - lcp(o, r), lcp(o, r)), (1, len(r) - 1), (0, len(d)), (0, len(o))]
    assert 0 < lcp(o, r) < len(o)


def test_without_the_cache_every_prompt_token_is_computed(tiny_llama_dir):
    b = TransformersBackend.load(tiny_llama_dir, prefix_cache_mb=0)
    assert b.prefix_cache is None
    p = b.render_prompt(QUESTION)
    gens = b.generate([p, p], sampling=GREEDY, max_new_tokens=4, seed=0)
    assert counts(gens) == [(len(b.encode(p)), 0)] * 2


def _tree_of_calls(b, sampling):
    """Calls shaped like a search: a root expanded three ways, then a mixed batch of
    children (full hits), the root again (partial hit), a new prompt and duplicates."""
    root = b.render_prompt(QUESTION)
    out = [b.generate([root] * 3, sampling=sampling, stop=STEP, max_new_tokens=6, seed=11)]
    kids = [root + g.text for g in out[0]]
    out.append(b.generate(kids + [root, b.render_prompt(OTHER), kids[0]], sampling=sampling,
                          stop=STEP, max_new_tokens=6, seed=12))
    out.append(b.generate([kids[1] + out[1][1].text] * 2, sampling=sampling, max_new_tokens=8, seed=13))
    return out


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
@pytest.mark.parametrize("sampling", [GREEDY, SamplingConfig(temperature=1.0)], ids=["greedy", "sampled"])
def test_cached_and_plain_generation_give_identical_tokens(request, fixture, sampling):
    b = TransformersBackend.load(request.getfixturevalue(fixture))
    plain = _tree_of_calls(b, sampling)
    b.configure_prefix_cache(16)
    cached = _tree_of_calls(b, sampling)
    reused = 0
    for pc, cc in zip(plain, cached):
        for p, c in zip(pc, cc):
            assert c.token_ids == p.token_ids and c.text == p.text and c.stop_reason == p.stop_reason
            assert c.logprobs == pytest.approx(p.logprobs, abs=1e-4)
            assert c.prompt_tokens + c.reused_tokens == p.prompt_tokens
            reused += c.reused_tokens
    assert reused > 0


def _node_rows(backend, **cfg):
    m = METHODS["mcts"]
    evs = list(m.run(QUESTION, backend, config=m.config(**cfg), seed=5))
    nodes = [e for e in evs if e.type == "node_proposed"]
    return nodes, evs[-1]


def test_mcts_with_the_cache_builds_the_same_tree_and_computes_each_token_once(cached_embedded):
    plain = load_backend(DEFAULT_MODEL)
    assert plain.prefix_cache is None
    p_nodes, p_end = _node_rows(plain, rollouts=4)
    c_nodes, c_end = _node_rows(cached_embedded, rollouts=4)
    assert [(n.parent, n.text, [t[0] for t in n.tokens]) for n in c_nodes] == \
           [(n.parent, n.text, [t[0] for t in n.tokens]) for n in p_nodes]
    for a, b in zip(c_nodes, p_nodes):
        assert [t[2] for t in a.tokens] == pytest.approx([t[2] for t in b.tokens], abs=1e-4)
    assert c_end.generated_tokens == p_end.generated_tokens
    # every generated token is in the tree, and the root prompt (with "Step 1:") is computed once
    root = cached_embedded.encode(cached_embedded.render_prompt(QUESTION) + cached_embedded.solution_prefix())
    assert c_end.computed_tokens == len(root) + c_end.generated_tokens
    assert p_end.computed_tokens > 3 * c_end.computed_tokens


def _kv(start, end):
    """Fake one-layer key/values whose entries are their positions (1 head, head_dim 1)."""
    pos = torch.arange(start, end, dtype=torch.float32)[None, :, None]
    return [(pos.clone(), -pos.clone())]


def test_radix_tree_splits_segments_and_returns_each_prefix_key_values():
    c = PrefixCache(max_bytes=10**6)
    assert c.insert([1, 2, 3, 4, 5], _kv) == 5
    assert c.insert([1, 2, 9, 9], _kv) == 2          # shares [1, 2]: the first segment is split
    assert c.insert([1, 2, 3], _kv, logits=torch.ones(3)) == 0
    m = c.match([1, 2, 3, 4, 7])
    assert m.length == 4 and m.logits is None
    k, v = m.kv(0, 4)
    assert k.flatten().tolist() == [0, 1, 2, 3] and v.flatten().tolist() == [0, -1, -2, -3]
    assert c.match([1, 2, 3]).logits.tolist() == [1, 1, 1]    # ends where a stored sequence ended
    assert c.match([1, 2, 9, 9]).kv(0, 4)[0].flatten().tolist() == [0, 1, 2, 3]
    assert c.stats()["tokens"] == 7 and c.stats()["bytes"] == 7 * 8


def test_memory_ceiling_evicts_least_recently_used_paths():
    per_token = 8                                     # float32 key + value, 1 head, head_dim 1
    c = PrefixCache(max_bytes=10 * per_token)
    c.insert([1, 2, 3, 4, 5, 6], _kv)
    c.insert([1, 2, 7, 8, 9, 10], _kv)                # 10 tokens: at the ceiling
    c.match([1, 2, 3, 4, 5, 6])                       # [1, 2, 7, ...] is now least recently used
    c.insert([20, 21, 22], _kv)                       # 13 > 10: a leaf must go
    assert c.nbytes <= c.max_bytes and c.ntokens == 9 and c.evicted_tokens == 4
    assert c.match([1, 2, 7, 8, 9, 10]).length == 2
    assert c.match([1, 2, 3, 4, 5, 6]).length == 6 and c.match([20, 21, 22]).length == 3
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(max_bytes=-1)


def test_backend_cache_stays_under_its_ceiling_and_still_gives_the_same_tokens(tiny_llama_dir):
    b = TransformersBackend.load(tiny_llama_dir)
    plain = _tree_of_calls(b, GREEDY)
    b.configure_prefix_cache(0.02)                    # ~20 KB: about 80 tokens of this model
    cached = _tree_of_calls(b, GREEDY)
    assert [[g.token_ids for g in c] for c in cached] == [[g.token_ids for g in c] for c in plain]
    assert 0 < b.prefix_cache.nbytes <= b.prefix_cache.max_bytes
    assert b.prefix_cache.evicted_tokens > 0
    with pytest.raises(ValueError, match="prefix cache size"):
        b.configure_prefix_cache(-1)
