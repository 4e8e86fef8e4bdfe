"""rStar-Math's process preference model (PPM) and what finds one for a search.

- model.py: `ProcessPreferenceModel` (the policy's transformer + a tanh scalar head), save/load;
- data.py: pairs and verified trajectories from terminal-guided MCTS on generated training problems;
- train.py: the pairwise Bradley-Terry training and pairwise accuracy.

`resolve(backend, path)` is how a search gets its PPM: the path given (``--ppm PATH``), else the
one the embedded model ships (``assets/models/<model>-ppm``), else a one-line error. Loaded PPMs
are cached by folder, so a run does not reload the weights. Not here: the searches that use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from engine.models.registry import ASSETS

SHIPPED_SUFFIX = "-ppm"


def shipped_path(model_name: str) -> Path | None:
    """The PPM folder an embedded model ships with, or None."""
    path = ASSETS / "models" / f"{model_name}{SHIPPED_SUFFIX}"
    return path if (path / "ppm.json").is_file() else None


@lru_cache(maxsize=4)
def _load(folder: str, mtime: float):
    from engine.ppm.model import ProcessPreferenceModel
    return ProcessPreferenceModel.load(folder)


def load_cached(path):
    """The PPM at ``path``, loaded once per folder (reloaded when its ppm.json changes)."""
    from engine.ppm.model import PPM_FILE, ProcessPreferenceModel
    folder = Path(str(path)).expanduser()
    meta = folder / PPM_FILE
    if not meta.is_file():
        return ProcessPreferenceModel.load(folder)          # raises the one-line PPMLoadError
    return _load(str(folder.resolve()), meta.stat().st_mtime)


def resolve_path(model_name: str, path: str = "") -> str:
    """The PPM folder a run uses: ``path`` when given, else the model's shipped one."""
    from engine.ppm.model import PPMLoadError
    if path:
        return str(path)
    shipped = shipped_path(model_name)
    if shipped is None:
        raise PPMLoadError(f"model {model_name!r} ships no PPM: give one with --ppm PATH "
                           f"(train it with `thoughtscope train-ppm`)")
    return str(shipped)


def resolve(backend, path: str = ""):
    """(PPM, its folder) for a run on ``backend``."""
    folder = resolve_path(backend.info.name, path)
    return load_cached(folder), folder
