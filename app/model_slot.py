"""The app's loaded model, swappable at run time without losing the one that works.

Every tab is built around one backend object; the app hands them a `ModelSlot`, which answers
every attribute (``generate``, ``info``, ``render_prompt``, ...) from the model it holds now.
``swap(model)`` loads the new model *first* and only then replaces the old one (on a GPU the
old model is first moved to CPU memory, so the two never share the GPU, and moved back if the
new one fails), so a load that fails — missing files, a folder of the wrong architecture, a hub
id with no network, out of memory, the chat format asked of a model without a chat template —
raises `ModelLoadError` with one line and leaves the previous model serving. `set_format`
changes the prompt format (engine/formats.py) of the model it holds without reloading it. Both run in the same
one-at-a-time queue as every model run (app/main.py), so neither happens under a running search.

Not here: loading itself (engine/models/registry.py, TransformersBackend.load).
"""

from __future__ import annotations

import gc
import threading

from engine.models.base import ModelLoadError


class ModelSlot:
    """A backend that can be replaced; ``load_kwargs`` (device, dtype, threads, prefix cache, and
    the format options of `engine.models.registry.load_backend`) apply to every model loaded into
    it, unless a `swap` gives its own format options."""

    def __init__(self, backend, **load_kwargs) -> None:
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_load_kwargs", dict(load_kwargs))
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def current(self):
        return self._backend

    def __getattr__(self, name: str):
        # only reached for names the slot itself lacks: everything of the backend's
        return getattr(self._backend, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._backend, name, value)

    def format_option(self, name: str, default=None):
        """A format option the slot loads models with (``format``, ``instruction``, ...)."""
        return self._load_kwargs.get(name, default)

    def swap(self, model: str, loader=None, **format_options) -> str:
        """Load ``model`` (an embedded name, folder, .gguf file or hub id) and serve it from now
        on; returns its description. ``format_options`` (format, instruction) replace the slot's
        own for this load. On any failure the previous model stays and this raises
        `ModelLoadError` saying what went wrong and that the previous model is still loaded."""
        from engine.models.registry import load_backend
        model = (model or "").strip()
        previous = self._backend.info.describe()
        with self._lock:
            # on a GPU the old model leaves it first (two seldom fit at once), parked in CPU memory
            # so that a failed load can put it back
            parked = _park(self._backend)
            try:
                try:
                    new = (loader or load_backend)(model, **{**self._load_kwargs, **format_options})
                    try:
                        check_format_runs(new)
                    except ValueError as e:
                        raise ModelLoadError(str(e)) from None
                except ModelLoadError as e:
                    raise ModelLoadError(f"{e} — still using {previous}") from None
                except MemoryError:
                    raise ModelLoadError(f"out of memory loading {model!r} — still using {previous}; "
                                         "try a smaller model, --dtype float16 or bfloat16, or free memory") from None
                except Exception as e:      # a library error load() did not foresee: still one line
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    memory = "out of memory" in first.lower() or "not enough memory" in first.lower()
                    hint = "; try a smaller model or a lower --dtype" if memory else ""
                    raise ModelLoadError(f"could not load {model!r}: {type(e).__name__}: {first}{hint} — "
                                         f"still using {previous}") from None
            except BaseException:
                _unpark(self._backend, parked)
                raise
            old = self._backend
            object.__setattr__(self, "_backend", new)
        del old
        _free_memory()
        return new.info.describe()

    def set_format(self, name: str, *, instruction: str | None = None):
        """Run the loaded model with prompt format ``name`` (``auto``: chosen from the model) from
        now on, without reloading it; ``instruction`` replaces the chat instruction (None: the
        one the slot loads with, else the format's own). The exemplars file and solution budget
        the slot loads with still apply. Returns the new `PromptFormat`; a ValueError (the model
        is left as it was) for a bad name or a format the model cannot run."""
        from engine import formats
        if instruction is None:
            instruction = self._load_kwargs.get("instruction")
        with self._lock:
            fmt = formats.make(name, self._backend, instruction=instruction,
                               exemplars=self._load_kwargs.get("exemplars"),
                               max_solution_tokens=self._load_kwargs.get("max_solution_tokens"))
            check_format_runs(self._backend, fmt)
            self._backend.prompt_format = fmt
        return fmt


def check_format_runs(backend, fmt=None) -> None:
    """A ValueError when ``backend`` cannot run ``fmt`` (default: the format set on it): the chat
    format needs the model's chat template."""
    from engine.formats import format_of
    fmt = fmt or format_of(backend)
    if fmt.name == "chat" and not getattr(backend.info, "chat_template", False):
        raise ValueError(f"{backend.info.name} has no chat template, so it cannot run the chat format: "
                         "choose base (a few-shot prompt) or auto")


def _park(backend):
    """Move a model held whole on a CUDA GPU to CPU memory and free its GPU memory; returns the
    device it was on (None: nothing moved: a CPU model, a server, or one spread or quantised
    over GPUs, which cannot simply be moved)."""
    model = getattr(backend, "model", None)
    device = str(getattr(backend, "device", ""))
    if model is None or not device.startswith("cuda") or getattr(model, "hf_device_map", None) \
            or getattr(model, "is_quantized", False):
        return None
    getattr(backend, "reset_prefix_cache", lambda: None)()   # pragma: no cover - needs a GPU (its KV is there)
    model.to("cpu")                     # pragma: no cover
    _free_memory()                      # pragma: no cover
    return device                       # pragma: no cover


def _unpark(backend, device) -> None:
    """Put a parked model back on its GPU (the new model failed to load)."""
    if device is not None:              # pragma: no cover - needs a GPU
        backend.model.to(device)


def _free_memory() -> None:
    """Return the replaced model's memory: Python objects now, cached GPU blocks too."""
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:       # pragma: no cover - freeing memory must never fail a swap
        pass
