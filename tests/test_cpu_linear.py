"""Linear layers packed once for oneDNN on the CPU (engine/models/cpu_linear.py): the embedded
model gives the same greedy tokens as with torch's own linear and logits within 1e-4; a packed
layer's rows agree within 1e-4 however many rows share the call; training still goes through
``F.linear`` (with gradients); a weight changed in place or replaced is packed again; the switch and the
size limit turn packing off; the PPM kept for scoring is packed and scores as before."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.models import cpu_linear
from engine.models.base import StopSpec
from engine.models.registry import DEFAULT_MODEL, load_backend
from engine.sampling import GREEDY

TOL = 1e-4      # the golden float tolerance (engine/golden.py)


def packed_layer(n_in: int = 64, n_out: int = 96) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(n_in, n_out))
    assert cpu_linear.pack_linears(layer) == 1
    return layer[0]


def test_the_embedded_model_decodes_the_same_tokens_packed_or_not(monkeypatch):
    packed = load_backend(DEFAULT_MODEL, prefix_cache_mb=0)
    assert packed.packed_linears > 0
    monkeypatch.setenv(cpu_linear.ENV_VAR, "0")
    plain = load_backend(DEFAULT_MODEL, prefix_cache_mb=0)
    assert plain.packed_linears == 0
    prompts = ["Question: Ann has 3 apples and buys 4 more. How many apples does she have?\nAnswer:",
               "Question: A box holds 12 pens. 5 are taken. How many are left?\nAnswer:"]
    a = packed.generate(prompts, sampling=GREEDY, stop=StopSpec((), eos=True), max_new_tokens=40, seed=0)
    b = plain.generate(prompts, sampling=GREEDY, stop=StopSpec((), eos=True), max_new_tokens=40, seed=0)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    for ga, gb in zip(a, b):
        for x, y in zip(ga.tokens, gb.tokens):
            assert abs(x.logprob - y.logprob) <= TOL
    ids = torch.tensor([packed.encode(prompts[0])])
    with torch.inference_mode():
        assert torch.allclose(packed.model(ids).logits, plain.model(ids).logits, atol=TOL, rtol=0)


def test_a_packed_row_is_the_same_in_any_batch_of_two_or_more():
    # the same bits on the CPU this was written on; oneDNN may pick other kernels for other
    # row counts on another CPU, so the rows are compared within the golden tolerance
    layer = packed_layer()
    x = torch.randn(24, 64)
    with torch.inference_mode():
        whole = layer(x)
        for rows in (2, 3, 11, 17):
            assert torch.allclose(layer(x[:rows]), whole[:rows], atol=TOL, rtol=0)
        assert torch.allclose(whole, F.linear(x, layer.weight, layer.bias), atol=TOL, rtol=0)


def test_training_goes_through_f_linear_with_gradients():
    layer = packed_layer()
    x = torch.randn(5, 64, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    assert torch.allclose(layer.weight.grad, torch.ones(96, 1) * x.detach().sum(0), atol=1e-5)


def test_a_weight_changed_in_place_or_replaced_is_packed_again():
    layer = packed_layer()
    x = torch.randn(6, 64)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)
        after = layer(x)
    assert torch.allclose(after - layer.bias, 2 * (before - layer.bias), atol=TOL, rtol=0)
    replaced = torch.zeros_like(layer.weight)                         # a new tensor at the same version
    while replaced._version < layer.weight._version:
        replaced.add_(0)
    assert replaced._version == layer.weight._version
    layer.weight = nn.Parameter(replaced)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.bias.expand(6, -1))


def test_the_switch_and_the_size_limit_turn_packing_off(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV_VAR, "0")
    assert cpu_linear.pack_linears(nn.Sequential(nn.Linear(8, 8))) == 0
    monkeypatch.delenv(cpu_linear.ENV_VAR)
    monkeypatch.setattr(cpu_linear, "MAX_PACKED_BYTES", 8 * 8 * 4 - 1)
    model = nn.Sequential(nn.Linear(8, 8))
    assert cpu_linear.pack_linears(model) == 0
    assert "forward" not in vars(model[0])          # left as torch made it
    assert cpu_linear.pack_linears(nn.Sequential(nn.Linear(8, 8).to(torch.float64))) == 0


def test_a_ppm_loaded_to_score_is_packed_and_scores_as_before():
    from engine.evaluation.evaluate import eval_problems
    from engine.ppm import _load, resolve_path
    from engine.ppm.model import ProcessPreferenceModel
    folder = resolve_path(DEFAULT_MODEL)
    plain = ProcessPreferenceModel.load(folder)
    packed = _load.__wrapped__(folder, 0.0)          # what load_cached keeps, without the cache
    assert sum("forward" in vars(m) for m in packed.modules()) > 0
    assert sum("forward" in vars(m) for m in plain.modules()) == 0
    texts = [plain.prompt(p.question, ["Step 1: 3 + 4 = 7", "Step 2: 7 * 2 = 14"]) for p in eval_problems("mcts", "hard", 5)]
    with torch.no_grad():
        assert packed.score_texts(texts) == [pytest.approx(s, abs=TOL) for s in plain.score_texts(texts)]
