"""Shared-prompt attention for decode passes (engine/models/cascade.py): the same outputs as
SDPA over the whole batch (within 1e-5: only the summation order changes), through shared
prompts, prompts with pads inside (part of them from a prefix cache), rows with nothing
generated yet in the window, and grouped-query heads; the same tokens through a real model;
used only where it pays, and only where it applies."""

from types import SimpleNamespace

import pytest
import torch

from engine.models import cascade
from engine.models.decode import Decoder, Request
from engine.models.registry import DEFAULT_MODEL, load_backend
from engine.models.base import StopSpec
from engine.models.transformers_backend import TransformersBackend
from engine.sampling import SamplingConfig
from conftest import save_tiny


def _request(slots, prompt_len, step, equal=True):
    encoded = [[7] * prompt_len if equal else [7] * prompt_len + [i] for i in range(len(slots))]
    return SimpleNamespace(slots=slots, encoded=encoded, step=step, spans={}, rows=len(slots))


def _layout():
    """A batch of 9 rows in 40 columns (this pass's column is the last): request A (3 rows,
    joined 6 steps ago, prompt of 20), B (2 rows, rows apart, joined 2 steps ago, prompt of
    12 with 3 pads inside: cached part, pads, new part), C (1 row, 9 steps ago), D (3 rows,
    joined just now), a done row of A that is no longer fed, and a row of D not fed at all."""
    cols = 40
    mask = torch.zeros(9, cols, dtype=torch.long)
    a, b, c, d = _request([0, 4, 2], 20, 6), _request([1, 6], 12, 2), _request([3], 15, 9), _request([5, 7, 8], 25, 0)
    for r, prompt in ((a, 20), (c, 15), (d, 25)):
        j = cols - 1 - r.step
        for row in r.slots:
            mask[row, j - prompt:j] = 1
            mask[row, j:] = 1
    j = cols - 1 - b.step
    for row in b.slots:                     # [cached 5][pads 3][new 4]: 12 real of 15 columns
        mask[row, j - 12:j - 7] = 1
        mask[row, j - 4:j] = 1
        mask[row, j:] = 1
    mask[4, -3:] = 0                        # A's second row is done: not fed for the last 3 tokens
    mask[8, -1] = 0                         # D's last row ended at its first token: nothing of its own yet
    return [a, b, c, d], mask


def _shared_kv(requests, mask, kv_heads, dim, gen):
    """Keys and values (rows, kv_heads, columns, dim) where each run of equal prompts holds the
    same numbers in its prompt columns (as the decoder's copies do), and zeros on pads."""
    rows, cols = mask.shape
    k, v = torch.randn(rows, kv_heads, cols, dim, generator=gen), torch.randn(rows, kv_heads, cols, dim, generator=gen)
    for r in requests:
        j = cols - 1 - r.step
        first = r.slots[0]
        for row in r.slots[1:]:
            if r.encoded[r.slots.index(row)] == r.encoded[0]:
                k[row, :, :j], v[row, :, :j] = k[first, :, :j], v[first, :, :j]
    pads = (mask == 0)[:, None, :, None]
    return k.masked_fill(pads, 0.0), v.masked_fill(pads, 0.0)


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2)])
def test_cascade_attention_equals_sdpa_over_the_whole_batch(heads, kv_heads):
    gen = torch.Generator().manual_seed(0)
    requests, mask = _layout()
    dim = 8
    k, v = _shared_kv(requests, mask, kv_heads, dim, gen)
    q = torch.randn(9, heads, 1, dim, generator=gen)
    plan = cascade.plan(requests, mask)
    assert plan is not None and len(plan.groups) == 4
    got, _ = cascade.attention(SimpleNamespace(), q, k, v, None, scaling=dim ** -0.5, cascade=plan)
    additive = torch.zeros(mask.shape).masked_fill(mask == 0, float("-inf"))[:, None, None, :]
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1),
        attn_mask=additive, scale=dim ** -0.5)
    assert got.shape == (9, 1, heads, dim)
    assert plan.empty[8].item() == float("-inf") and plan.empty[:8].eq(0).all()
    assert torch.allclose(got, want.transpose(1, 2), atol=1e-5, rtol=0)
    # the pads inside B's prompt were read as pads: B's group carries a mask over them
    b_group = next(g for g in plan.groups if g[0] == 1)
    assert b_group[5] is not None and int(torch.isinf(b_group[5]).sum()) == 3


def test_rows_that_share_nothing_or_too_few_rows_keep_plain_attention():
    few = [_request([0, 1], 20, 3), _request([2, 3], 20, 3)]
    assert cascade.plan(few, torch.ones(4, 30, dtype=torch.long)) is None          # fewer than MIN_ROWS rows
    alone = [_request([i], 28, 1) for i in range(8)]                               # no prompt is shared
    assert cascade.plan(alone, torch.ones(8, 30, dtype=torch.long)) is None
    distinct = [_request([0, 1, 2, 3, 4, 5, 6, 7], 28, 1, equal=False)]           # one call, 8 different prompts
    assert cascade.plan(distinct, torch.ones(8, 30, dtype=torch.long)) is None
    shared = [_request([0, 1, 2, 3], 28, 1), _request([4, 5, 6, 7], 28, 1)]
    assert cascade.plan(shared, torch.ones(8, 30, dtype=torch.long)) is not None


def _run(backend, calls, join_after=5):
    """Decode ``calls`` (prompts, seed) in one batch, the last joining ``join_after`` tokens in."""
    warm = SamplingConfig(temperature=0.8)
    stop = StopSpec(("\n",), eos=False)
    reqs = [Request([backend.encode(p) for p in prompts], warm, stop, 40, seed) for prompts, seed in calls]
    d = Decoder(backend)
    d.admit(reqs[:-1])
    for _ in range(join_after):
        d.step()
    d.admit(reqs[-1:])
    while not d.step():
        pass
    return [g for r in reqs for g in r.result]


@pytest.mark.parametrize("model", ["embedded", "qwen2"])
def test_a_batch_decoded_with_the_cascade_gives_the_tokens_of_plain_attention(model, tiny_qwen2_dir, monkeypatch):
    # the embedded Llama, and a random Qwen2 with grouped-query heads
    load = (lambda: load_backend(DEFAULT_MODEL)) if model == "embedded" else (
        lambda: TransformersBackend.load(tiny_qwen2_dir))
    with_it = load()
    monkeypatch.setenv("THOUGHTSCOPE_CASCADE", "0")
    without = load()
    assert with_it.cascade and not without.cascade
    q = ["Q: 12 + 30 * 2 = ?\nA:", "Q: 7 * 8 - 5 = ?\nA:", "Q: (4 + 9) * 3 = ?\nA:"]
    calls = [([q[0]] * 3, 1), ([q[1]] * 3, 2), ([q[2]] * 3, 3)]
    got, want = _run(with_it, calls), _run(without, calls)
    assert with_it.decode_clock.cascade > 0 and without.decode_clock.cascade == 0
    assert [g.token_ids for g in got] == [g.token_ids for g in want]
    for g, w in zip(got, want):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)


def test_the_cascade_applies_to_plain_causal_models_only_and_can_be_turned_off(tiny_llama_dir, tiny_qwen2_dir,
                                                                               tmp_path, monkeypatch):
    assert TransformersBackend.load(tiny_qwen2_dir).cascade             # grouped-query heads too
    # a sliding window (Gemma2) or an architecture not known to be plain causal SDPA (Phi3) keeps SDPA
    assert not TransformersBackend.load(save_tiny(tmp_path / "gemma2", "gemma2")).cascade
    phi3 = TransformersBackend.load(save_tiny(tmp_path / "phi3", "phi3"))
    assert not phi3.cascade and phi3.model.config._attn_implementation == "sdpa"
    bf16 = TransformersBackend.load(tiny_llama_dir, dtype="bfloat16")
    assert not bf16.cascade and bf16.model.config._attn_implementation == "sdpa"
    monkeypatch.setenv("THOUGHTSCOPE_CASCADE", "0")
    off = TransformersBackend.load(tiny_llama_dir)
    assert not off.cascade and off.model.config._attn_implementation == "sdpa"


def test_a_plan_reused_from_the_last_pass_equals_one_made_afresh(monkeypatch):
    """While the same calls run in the same rows, `Planner` extends the last plan by this pass's
    column; at every pass of a real batch (calls joining midway, rows finishing) it equals `plan`."""
    checked = {"reused": 0, "passes": 0}
    real_call = cascade.Planner.__call__

    def checking(self, requests, mask):
        reused = self._last is not None and self._last[2] == mask.shape[1] - 1
        got, want = real_call(self, requests, mask), cascade.plan(requests, mask)
        assert (got is None) == (want is None)
        if got is not None:
            checked["passes"] += 1
            checked["reused"] += reused
            assert torch.equal(got.perm, want.perm) and torch.equal(got.inv, want.inv)
            assert [g[:5] for g in got.groups] == [g[:5] for g in want.groups] and got.own_from == want.own_from
            assert torch.equal(got.own_mask, want.own_mask) and torch.equal(got.empty, want.empty)
            assert got.shared == want.shared
        return got

    monkeypatch.setattr(cascade.Planner, "__call__", checking)
    b = load_backend(DEFAULT_MODEL)
    _run(b, [(["Q: 12 + 30 * 2 = ?\nA:"] * 3, 1), (["Q: 7 * 8 - 5 = ?\nA:"] * 3, 2),
             (["Q: (4 + 9) * 3 = ?\nA:"] * 2 + ["Q: 5 * 5 = ?\nA:"], 3)])
    assert checked["passes"] > 0 and 0 < checked["reused"] < checked["passes"]
