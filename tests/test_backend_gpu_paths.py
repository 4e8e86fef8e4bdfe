"""The local backend's paths for real models on GPUs, checked on tiny random models of real
architectures (no GPU here): out of memory during generation halves the batch (an OOM raised
from a real forward by a wrapper), logits are computed only for the positions read, the
prefix cache works on sliding-window models (Gemma2: it used to turn itself off), the forward
gets transformers 5's ``cache`` (no deprecation warning), and --quantize says what it needs."""

import warnings

import pytest
import torch

from conftest import save_tiny
from engine.models.base import ModelLoadError, StopSpec
from engine.models.transformers_backend import OutOfMemory, TransformersBackend
from engine.sampling import GREEDY, SamplingConfig

ARCHS = ["llama", "qwen2", "mistral", "gemma2", "phi3"]
WARM = SamplingConfig(temperature=0.8)
STEP = StopSpec(("\n",), eos=False)
PROMPTS = ["Question: 12 + 30 =", "Question: what is 7 * 8?", "Q: 5", "Question: a b c d e f"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    return {a: save_tiny(tmp_path_factory.mktemp(f"tiny-{a}"), a) for a in ARCHS}


class _Recorder(torch.nn.Module):
    """The real model, with each forward's logits shape recorded and, past ``oom_above`` rows, the
    out-of-memory error CUDA raises (a test double for the error path only)."""

    def __init__(self, model, oom_above: int | None = None):
        super().__init__()
        self.inner, self.oom_above, self.shapes, self.ooms = model, oom_above, [], 0
        self.forward = self._forward           # the backend reads forward's signature

    def _forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=None,
                 logits_to_keep=0, **kw):
        if self.oom_above is not None and input_ids.shape[0] > self.oom_above:
            self.ooms += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         use_cache=use_cache, logits_to_keep=logits_to_keep, **kw)
        self.shapes.append((tuple(input_ids.shape), tuple(out.logits.shape)))
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


def _wrapped(path, **kw) -> TransformersBackend:
    b = TransformersBackend.load(path)
    return TransformersBackend(_Recorder(b.model, **kw), b.tokenizer, name="tiny", source=str(path))


def _gen(b, prompts, seed=4, n=12):
    return b.generate(prompts, sampling=WARM, stop=STEP, max_new_tokens=n, seed=seed)


def _key(gens):
    return [(g.token_ids, g.text, g.stop_reason) for g in gens]


@pytest.mark.parametrize("arch", ARCHS)
def test_out_of_memory_halves_the_batch_and_each_half_gets_its_own_run(tiny_dirs, arch):
    b = _wrapped(tiny_dirs[arch], oom_above=2)
    got = _gen(b, PROMPTS)
    assert b.model.ooms >= 1 and len(got) == 4
    plain = TransformersBackend.load(tiny_dirs[arch])
    assert _key(got) == _key(_gen(plain, PROMPTS[:2])) + _key(_gen(plain, PROMPTS[2:]))


def test_out_of_memory_for_one_sequence_is_a_clear_error(tiny_dirs):
    b = _wrapped(tiny_dirs["llama"], oom_above=0)
    with pytest.raises(OutOfMemory, match=r"^out of cpu memory generating one sequence of \d+ prompt tokens \+ 12 new "
                                          r"ones with tiny: lower the token budget"):
        _gen(b, PROMPTS[:3])


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_are_computed_only_for_the_position_read(tiny_dirs, arch):
    b = _wrapped(tiny_dirs[arch])
    _gen(b, PROMPTS, n=3)
    prefill = b.model.shapes[0]
    assert prefill[0][1] > 1 and prefill[1][1] == 1      # many prompt positions in, one position's logits out
    assert all(logits[1] == 1 for _, logits in b.model.shapes)
    b.model.shapes.clear()
    assert len(b.score(PROMPTS[0], " 42")) == len(b.tokenizer(" 42", add_special_tokens=False)["input_ids"])
    (ids, logits), = b.model.shapes
    assert logits[1] == len(b.tokenizer(" 42", add_special_tokens=False)["input_ids"]) + 1 < ids[1]


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_passes_the_cache_by_its_new_name_without_a_deprecation_warning(tiny_dirs, arch):
    b = TransformersBackend.load(tiny_dirs[arch], prefix_cache_mb=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _gen(b, PROMPTS, n=4)
        b.score(PROMPTS[0], " 4")
    assert b.cache_kw == "cache"
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_the_prefix_cache_works_past_the_sliding_window_of_gemma2(tiny_dirs):
    b = TransformersBackend.load(tiny_dirs["gemma2"], prefix_cache_mb=16)
    assert b.model.config.sliding_window == 64 and b.prefix_cache is not None and b.sliding_window
    root = "Question: " + "one two three four five six seven eight nine ten " * 3   # past the 64-token window
    assert len(b.encode(root)) > 64
    first = b.generate([root], sampling=WARM, stop=STEP, max_new_tokens=30, seed=2)[0]
    kid = root + first.text
    second = b.generate([kid], sampling=GREEDY, stop=STEP, max_new_tokens=30, seed=2)[0]
    # the child reuses its cached prefix, past the window (the cache used to be off: 0 reused) ...
    assert second.reused_tokens > 64
    # ... and each token's logprob is the one the whole sequence computed in one pass gives it
    whole = b.score_ids(kid, second.token_ids)
    assert [t.logprob for t in whole] == pytest.approx(second.logprobs, abs=1e-4)
    plain = TransformersBackend.load(tiny_dirs["gemma2"])
    assert _key([plain.generate([kid], sampling=GREEDY, stop=STEP, max_new_tokens=30, seed=2)[0]]) == _key([second])


def test_quantize_without_bitsandbytes_or_a_gpu_says_what_it_needs(tiny_dirs):
    with pytest.raises(ModelLoadError, match="quantize must be one of 4bit, 8bit, got '3bit'"):
        TransformersBackend.load(tiny_dirs["llama"], quantize="3bit")
    with pytest.raises(ModelLoadError, match=r"--quantize 4bit needs (the bitsandbytes package and )?a CUDA GPU"):
        TransformersBackend.load(tiny_dirs["llama"], quantize="4bit", device="cpu")
