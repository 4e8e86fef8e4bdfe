"""Shared fixtures: tiny real models built from transformers configs, saved to disk and loaded
back through the same `from_pretrained` path a user's model takes."""

from __future__ import annotations

import os
import random
import tempfile

import pytest

os.environ.setdefault("THOUGHTSCOPE_THREADS", "1")      # tests never fight a busy core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# never touch the user's own run database from a test
os.environ["THOUGHTSCOPE_DB"] = os.path.join(tempfile.mkdtemp(prefix="thoughtscope-test-"), "runs.db")


def free_port() -> int:
    """A loopback port nobody listens on (for serving the app in a test)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout: float) -> None:
    """Stop a server a test started: terminate, and kill it when it has not ended in ``timeout`` s."""
    import subprocess
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tokenizer():
    from engine.demo_model import problems as P
    from engine.demo_model.tokenizer import build_tokenizer
    rng = random.Random(0)
    texts = ["".join(P.render(p, f, rng)) for t in P.TIERS for p in P.generate(t, 60, 1) for f in P.FORMATS]
    return build_tokenizer(texts, vocab_size=400)


# a minimal chat template in the shape real ones have (role markers, a generation prompt)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
ARCHITECTURES = ("llama", "qwen2", "mistral", "gemma2", "phi3")


def save_tiny(path, arch: str = "llama", seed: int = 0, chat_template: bool = False):
    """Save a random-initialised model of a real architecture and our tokenizer to ``path``
    (with ``chat_template``, the tokenizer carries one, as a chat model's does)."""
    import torch
    import transformers as T

    tok = _tokenizer()
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.eos_token_id)
    extra = {"gemma2": dict(head_dim=8, sliding_window=64, query_pre_attn_scalar=8),
             "mistral": dict(sliding_window=None)}.get(arch, {})
    config = {"llama": T.LlamaConfig, "qwen2": T.Qwen2Config, "mistral": T.MistralConfig,
              "gemma2": T.Gemma2Config, "phi3": T.Phi3Config}[arch](**common, **extra)
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def store(tmp_path):
    """A run database in the test's own folder, closed after the test."""
    from engine.store import Store
    with Store(tmp_path / "runs.db") as s:
        yield s


def stored_run(store, method: str, config: dict, question: str = "What is 2 + 3?", gold="5", seed=7) -> str:
    """A session holding a run's start, root and end, as a method would store it."""
    from engine import events as E
    sid = store.create_session(method=method, model="tiny", question=question, gold=gold, config=config, seed=seed)
    for ev in (E.RunStarted(method=method, question=question, prompt=question, gold=gold, config=config, seed=seed,
                            model="tiny"),
               E.NodeProposed(node=E.ROOT, parent=E.NO_PARENT, depth=0, action="root", text=question),
               E.RunFinished(status="done")):
        store.append(sid, ev)
    store.finish(sid, status="done", message="", wall_s=0.1)
    return sid


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_backend(tiny_llama_dir):
    from engine.models.transformers_backend import TransformersBackend
    return TransformersBackend.load(tiny_llama_dir, name="tiny-llama")


@pytest.fixture(scope="session")
def default_backend():
    """The embedded default model, as the app loads it."""
    from engine.models.registry import DEFAULT_MODEL, load_backend
    return load_backend(DEFAULT_MODEL)
