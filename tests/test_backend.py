"""The transformers backend on real models: loading, and generate / distribution / score agreeing."""

import math

import pytest
import torch

from engine.models.base import InputError, ModelLoadError, StopSpec
from engine.models.registry import EMBEDDED, load_backend
from engine.models.threads import configure_threads
from engine.models.transformers_backend import TransformersBackend
from engine.sampling import GREEDY, SamplingConfig

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"


@pytest.mark.parametrize("fixture,arch", [("tiny_llama_dir", "LlamaForCausalLM"),
                                          ("tiny_qwen2_dir", "Qwen2ForCausalLM")])
def test_tiny_models_of_real_architectures_load_and_generate(request, fixture, arch):
    backend = TransformersBackend.load(request.getfixturevalue(fixture))
    assert backend.info.architecture == arch
    assert backend.info.device == "cpu" and backend.info.dtype == "float32"
    gen = backend.generate([backend.render_prompt(QUESTION)], sampling=GREEDY, max_new_tokens=8, seed=0)[0]
    assert len(gen.tokens) == 8 and gen.stop_reason == "length"
    assert gen.prompt_tokens == len(backend.encode(backend.render_prompt(QUESTION)))


def test_logprob_of_generated_token_equals_score_and_distribution(tiny_backend):
    prompt = tiny_backend.render_prompt(QUESTION)
    for sampling in (GREEDY, SamplingConfig(temperature=1.0)):
        gen = tiny_backend.generate([prompt], sampling=sampling, max_new_tokens=12, seed=3)[0]
        scored = tiny_backend.score_ids(prompt, gen.token_ids)
        assert [s.token_id for s in scored] == gen.token_ids
        for g, s in zip(gen.tokens, scored):
            assert g.logprob == pytest.approx(s.logprob, abs=1e-4)
            assert [a for a, _ in g.top] == [a for a, _ in s.top]
        dist = tiny_backend.distribution(prompt)
        first = gen.tokens[0]
        assert math.log(dist.probs[first.token_id]) == pytest.approx(first.logprob, abs=1e-4)
        assert dist.probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_greedy_picks_the_most_likely_token(tiny_backend):
    prompt = tiny_backend.render_prompt(QUESTION)
    gen = tiny_backend.generate([prompt], sampling=GREEDY, max_new_tokens=1, seed=0)[0]
    assert gen.tokens[0].token_id == int(tiny_backend.distribution(prompt).probs.argmax())
    assert gen.tokens[0].logprob == pytest.approx(gen.tokens[0].top[0][1])


def test_same_seed_same_tokens_other_seed_other_tokens(tiny_backend):
    prompts = [tiny_backend.render_prompt(QUESTION)] * 3
    hot = SamplingConfig(temperature=1.5)
    a = tiny_backend.generate(prompts, sampling=hot, max_new_tokens=20, seed=1)
    b = tiny_backend.generate(prompts, sampling=hot, max_new_tokens=20, seed=1)
    c = tiny_backend.generate(prompts, sampling=hot, max_new_tokens=20, seed=2)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    assert len({tuple(g.token_ids) for g in a}) > 1          # rows of one batch differ too


def test_batched_left_padded_generation_equals_one_by_one(tiny_backend):
    prompts = [tiny_backend.render_prompt(q) for q in
               (QUESTION, "Tom has 5 pencils. How many pencils does Tom have now?", QUESTION + " Think.")]
    together = tiny_backend.generate(prompts, sampling=GREEDY, max_new_tokens=10, seed=0)
    alone = [tiny_backend.generate([p], sampling=GREEDY, max_new_tokens=10, seed=0)[0] for p in prompts]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]


def test_stop_string_ends_the_sequence_and_is_kept_in_text(default_backend):
    prompt = default_backend.render_prompt(QUESTION)
    gen = default_backend.generate([prompt], sampling=GREEDY, stop=StopSpec(("\n",)), max_new_tokens=50, seed=0)[0]
    assert gen.stop_reason == "stop" and gen.stop_string == "\n"
    assert gen.text.endswith("\n") and gen.text.count("\n") == 1
    assert gen.text.startswith("Step 1:")


def test_default_model_solves_an_easy_problem_in_the_step_format(default_backend):
    gen = default_backend.generate([default_backend.render_prompt(QUESTION)], sampling=GREEDY,
                                   max_new_tokens=60, seed=0)[0]
    assert gen.stop_reason == "eos"
    assert gen.text.strip().splitlines() == ["Step 1: 23 + 14 = 37", "The answer is 37."]


def test_encode_remembers_a_prompt_and_hands_out_a_copy(default_backend):
    b = default_backend
    prompt = "Question: Tom has 3 apples and buys 4 more. How many apples does Tom have?\nStep 1:"
    direct = b.tokenizer(prompt, add_special_tokens=not b.use_chat_template)["input_ids"]
    first = b.encode(prompt)
    first.append(-1)                              # a caller's change must not reach the memo
    hits = b._encode_memo.cache_info().hits
    assert b.encode(prompt) == direct and b._encode_memo.cache_info().hits == hits + 1


def test_bad_prompts_and_lengths_are_clear_errors(tiny_backend):
    with pytest.raises(InputError, match="empty"):
        tiny_backend.render_prompt("   ")
    with pytest.raises(InputError, match="reads at most"):
        tiny_backend.generate(["x " * 600], sampling=GREEDY, max_new_tokens=5, seed=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_backend.generate(["hi"], sampling=GREEDY, max_new_tokens=0, seed=0)
    with pytest.raises(ValueError, match="stop strings"):
        StopSpec(("",))


def test_missing_or_broken_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_backend(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_backend(str(tmp_path / "empty"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="could not load"):
        load_backend(str(tmp_path / "broken"))
    with pytest.raises(ModelLoadError, match="no network"):
        load_backend("some-org/not-a-real-model-anywhere")      # HF_HUB_OFFLINE=1 in conftest


def test_embedded_default_model_is_small_and_loads(default_backend):
    assert default_backend.info.name == "arith-llama-3m"
    assert default_backend.info.architecture == "LlamaForCausalLM"
    assert EMBEDDED["arith-llama-3m"].size_bytes() < 25_000_000
    assert default_backend.info.chat_template is False


@pytest.mark.slow
def test_smollm2_loads_from_the_packaged_gguf_with_its_chat_template():
    backend = load_backend("smollm2-135m")
    assert backend.info.parameters > 100e6 and backend.info.chat_template
    prompt = backend.render_prompt("What is the capital of France?")
    assert "<|im_start|>assistant" in prompt and "\\boxed" in prompt         # the chat format's instruction
    bare = backend.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    gen = backend.generate([bare], sampling=GREEDY, max_new_tokens=20, seed=0)[0]
    assert "Paris" in gen.text and gen.stop_reason == "eos"


def test_thread_count_is_configurable(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("THOUGHTSCOPE_THREADS", "lots")
        with pytest.raises(ValueError, match="THOUGHTSCOPE_THREADS"):
            configure_threads()
        with pytest.raises(ValueError, match="threads"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_plain_solutions_are_seeded_with_the_step_format_only_for_non_chat_models(default_backend, tiny_backend):
    from engine.search.common import StepProposer
    assert default_backend.solution_prefix() == "Step 1:"
    proposer = StepProposer(default_backend, QUESTION, sampling=SamplingConfig(temperature=1.5))
    firsts = proposer.next_steps([""] * 8, seed=0)
    assert all(s.text.startswith("Step 1:") for s in firsts)          # never a sub-question trace
    second = proposer.next_steps([firsts[0].text], seed=0)[0]
    assert not second.text.startswith("Step 1:")                      # only the first step is seeded


@pytest.mark.slow
def test_chat_models_get_no_seeded_prefix():
    assert load_backend("smollm2-135m").solution_prefix() == ""
