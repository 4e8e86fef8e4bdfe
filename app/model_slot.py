"""The app's loaded model, swappable at run time without losing the one that works.

Every tab is built around one backend object; the app hands them a `ModelSlot`, which answers
every attribute (``generate``, ``info``, ``render_prompt``, ...) from the model it holds now.
``swap(model)`` loads the new model *first* and only then replaces the old one, so a load that
fails — missing files, a folder of the wrong architecture, a hub id with no network, out of
memory — raises `ModelLoadError` with one line and leaves the previous model serving. The swap
runs in the same one-at-a-time queue as every model run (app/main.py), so it never happens
under a running search.

Not here: loading itself (engine/models/registry.py, TransformersBackend.load).
"""

from __future__ import annotations

import gc
import threading

from engine.models.base import ModelLoadError


class ModelSlot:
    """A backend that can be replaced; ``load_kwargs`` (device, dtype, threads, prefix cache)
    apply to every model loaded into it."""

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

    def swap(self, model: str, loader=None) -> str:
        """Load ``model`` (an embedded name, folder, .gguf file or hub id) and serve it from now
        on; returns its description. On any failure the previous model stays and this raises
        `ModelLoadError` saying what went wrong and that the previous model is still loaded."""
        from engine.models.registry import load_backend
        model = (model or "").strip()
        previous = self._backend.info.describe()
        with self._lock:
            try:
                new = (loader or load_backend)(model, **self._load_kwargs)
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
            old = self._backend
            object.__setattr__(self, "_backend", new)
        del old
        _free_memory()
        return new.info.describe()


def _free_memory() -> None:
    """Return the replaced model's memory: Python objects now, cached GPU blocks too."""
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:       # pragma: no cover - freeing memory must never fail a swap
        pass
