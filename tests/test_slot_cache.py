"""The running batch's key/value slot buffers (engine/models/growing_cache.py): after any
sequence of joins, leaves (rows moved into freed places), dropped columns and new tokens, the
layer's ``keys``/``values`` are exactly what a plain tensor kept by concatenation and row
selection holds (rows joined whole or from a prefix cache's pieces) (copies only, so equality is exact), pads are zeros even where a departed
row's numbers were, and a forward pass through slot layers gives the logits of a plain cache."""

import random

import torch

from engine.models.growing_cache import slot_layer

H, D = 2, 3


def _rand(n, w, gen):
    return torch.randn(n, H, w, D, generator=gen), torch.randn(n, H, w, D, generator=gen)


def _left_pad(x, width):
    return torch.nn.functional.pad(x, (0, 0, width - x.shape[2], 0))


def _join_in_pieces(layer, rng, gen):
    """Join 1-2 prompts of 1-3 equal rows each through ``join_pieces``, each prompt cut into
    1-4 pieces; returns the rows as one left-padded (rows, H, w, D) pair, what ``join`` takes."""
    prompts, ks, vs = [], [], []
    for _ in range(rng.randint(1, 2)):
        copies, width = rng.randint(1, 3), rng.randint(1, 40)
        k, v = _rand(1, width, gen)
        cuts = sorted(rng.sample(range(1, width), min(width - 1, rng.randint(0, 3))))
        bounds = [0, *cuts, width]
        prompts.append((copies, [(k[0, :, a:b], v[0, :, a:b]) for a, b in zip(bounds, bounds[1:])]))
        ks += [k] * copies
        vs += [v] * copies
    layer.join_pieces(prompts)
    w = max(k.shape[2] for k in ks)
    return torch.cat([_left_pad(k, w) for k in ks]), torch.cat([_left_pad(v, w) for v in vs])


def test_slot_layer_matches_a_plain_cache_through_joins_leaves_and_tokens():
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    layer = slot_layer()()
    ref_k = ref_v = None
    for _ in range(300):
        op = rng.random()
        rows = 0 if ref_k is None else ref_k.shape[0]
        if ref_k is None or op < 0.25:                          # a request joins
            if rng.random() < 0.5:
                k, v = _rand(rng.randint(1, 3), rng.randint(1, 40), gen)
                layer.join(k, v)
            else:                                                # from a prefix cache's pieces
                k, v = _join_in_pieces(layer, rng, gen)
            if ref_k is None:
                ref_k, ref_v = k, v
            else:
                w = max(ref_k.shape[2], k.shape[2])
                ref_k = torch.cat([_left_pad(ref_k, w), _left_pad(k, w)])
                ref_v = torch.cat([_left_pad(ref_v, w), _left_pad(v, w)])
        elif op < 0.45 and rows > 1:                             # rows leave; the last move in
            n = rng.randint(1, rows - 1)
            index = list(range(rows))
            if rng.random() < 0.5:                               # any rows, in any order
                rng.shuffle(index)
                index = index[:n]
            else:                                                # as the decoder leaves: the last rows fill the freed places
                freed = sorted(rng.sample(range(rows), rows - n))
                movers = [row for row in range(n, rows) if row not in freed]
                index = index[:n]
                for hole, row in zip([f for f in freed if f < n], movers):
                    index[hole] = row
            layer.keep(index)
            ref_k, ref_v = ref_k[index], ref_v[index]
        elif op < 0.55 and ref_k.shape[2] > 1:                   # columns no row uses any more
            c = rng.randint(1, ref_k.shape[2] - 1)
            layer.drop_columns(c)
            ref_k, ref_v = ref_k[:, :, c:], ref_v[:, :, c:]
        else:                                                    # one token for every row
            k, v = _rand(rows, 1, gen)
            out_k, out_v = layer.update(k, v)
            ref_k, ref_v = torch.cat([ref_k, k], dim=2), torch.cat([ref_v, v], dim=2)
            assert torch.equal(out_k, ref_k) and torch.equal(out_v, ref_v)
        assert torch.equal(layer.keys, ref_k) and torch.equal(layer.values, ref_v)
        assert layer.get_seq_length() == ref_k.shape[2]


def test_a_joining_row_gets_zeros_where_a_departed_row_had_numbers():
    layer = slot_layer()()
    layer.join(torch.full((2, H, 10, D), float("nan")), torch.full((2, H, 10, D), float("nan")))
    layer.keep([0])                                          # row 1 leaves; its slot keeps NaNs
    layer.join(torch.ones(1, H, 4, D), torch.ones(1, H, 4, D))
    assert torch.equal(layer.keys[1, :, :6], torch.zeros(H, 6, D))
    assert torch.equal(layer.keys[1, :, 6:], torch.ones(H, 4, D))
    layer.keep([1])
    layer.join(torch.ones(1, H, 14, D), torch.ones(1, H, 14, D))   # wider: the batch grows left
    assert torch.equal(layer.keys[0, :, :4], torch.zeros(H, 4, D))
    layer.join(torch.full((1, H, 14, D), float("nan")), torch.full((1, H, 14, D), float("nan")))
    layer.keep([0])
    layer.join_pieces([(2, [(torch.ones(H, 3, D), torch.ones(H, 3, D))])])   # from a prefix cache's pieces
    assert torch.equal(layer.keys[1:, :, :11], torch.zeros(2, H, 11, D))
    assert torch.equal(layer.keys[1:, :, 11:], torch.ones(2, H, 3, D))


def test_a_forward_pass_through_slot_layers_gives_the_plain_cache_logits(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, DynamicCache
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (3, 7), generator=gen)
    with torch.inference_mode():
        plain = DynamicCache()
        model(input_ids=ids, cache=plain, use_cache=True)
        slots = DynamicCache()
        slots.layer_class_to_replicate = slot_layer()
        slots.layers = [slots.layer_class_to_replicate() for _ in plain.layers]
        for s, p in zip(slots.layers, plain.layers):
            s.join(p.keys.clone(), p.values.clone())
        nxt = torch.randint(3, model.config.vocab_size, (3, 1), generator=gen)
        a = model(input_ids=nxt, cache=plain, use_cache=True).logits
        b = model(input_ids=nxt, cache=slots, use_cache=True).logits
    assert torch.allclose(a, b, atol=1e-5)
