"""rStar-Math's process preference model (PPM) and what finds one for a search.

- model.py: `ProcessPreferenceModel` (the policy's transformer + a tanh scalar head), save/load;
- data.py: pairs and verified trajectories from terminal-guided MCTS on generated training problems;
- train.py: the pairwise Bradley-Terry training and pairwise accuracy.

`resolve(backend, path, code=...)` is how a search gets its PPM: the path given (``--ppm PATH``),
else the one the embedded model ships for the search's text format (``assets/models/<model>-ppm``
for plain steps, ``<model>-ppm-code`` for code-verified MCTS's code steps), else a one-line error.
A PPM records the text it was trained on (``ppm.json`` ``training.data.text_format``: "plain" or
"code"); `check_text_format` refuses one that would score the other format. Loaded PPMs are
cached by folder, so a run does not reload the weights. Not here: the searches that use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from engine.models.registry import ASSETS

SHIPPED_SUFFIX = "-ppm"
CODE_SUFFIX = "-code"           # <model>-ppm-code: the PPM of code-verified MCTS's code steps
CODE_MARK = "\nCode:\n"       # the embedded model's code prompt (engine/method_prompts.py code_prompt)


def shipped_path(model_name: str, code: bool = False) -> Path | None:
    """The PPM folder an embedded model ships with (for code steps with ``code``), or None."""
    path = ASSETS / "models" / f"{model_name}{SHIPPED_SUFFIX}{CODE_SUFFIX if code else ''}"
    return path if (path / "ppm.json").is_file() else None


def text_format(pairs) -> str | None:
    """The embedded format's text the pairs hold: "code" (code-verified MCTS's code prompt),
    "plain" (plain steps), or None when they are neither or mixed (then nothing is checked)."""
    if pairs and all(CODE_MARK in p.prompt for p in pairs):
        return "code"
    if pairs and all(p.prompt.startswith("Question: ") and CODE_MARK not in p.prompt for p in pairs):
        return "plain"
    return None


def check_text_format(ppm, folder, code: bool) -> None:
    """A PPM trained on one text format must not score the other (its scores would be noise)."""
    from engine.ppm.model import PPMLoadError
    trained = ppm.meta.get("training", {}).get("data", {}).get("text_format")
    want = "code" if code else "plain"
    if trained is not None and trained != want:
        raise PPMLoadError(f"the PPM at {folder} was trained on {trained} steps, but this search writes {want} "
                           f"steps: give a PPM trained on {want} steps with --ppm PATH")


@lru_cache(maxsize=4)
def _load(folder: str, mtime: float):
    from engine.models.cpu_linear import pack_linears
    from engine.ppm.model import ProcessPreferenceModel
    ppm = ProcessPreferenceModel.load(folder)
    pack_linears(ppm)       # a PPM loaded to score: on the CPU, 16 texts in 115 instead of 194 ms
    return ppm


def load_cached(path):
    """The PPM at ``path``, loaded once per folder (reloaded when its ppm.json changes)."""
    from engine.ppm.model import PPM_FILE, ProcessPreferenceModel
    folder = Path(str(path)).expanduser()
    meta = folder / PPM_FILE
    if not meta.is_file():
        return ProcessPreferenceModel.load(folder)          # raises the one-line PPMLoadError
    return _load(str(folder.resolve()), meta.stat().st_mtime)


def resolve_path(model_name: str, path: str = "", code: bool = False) -> str:
    """The PPM folder a run uses: ``path`` when given, else the model's shipped one."""
    from engine.ppm.model import PPMLoadError
    if path:
        return str(path)
    shipped = shipped_path(model_name, code)
    if shipped is None:
        what = "PPM for code steps" if code else "PPM"
        raise PPMLoadError(f"model {model_name!r} ships no {what}: give one with --ppm PATH "
                           f"(train it with `thoughtscope train-ppm`)")
    return str(shipped)


def resolve(backend, path: str = "", code: bool = False):
    """(PPM, its folder) for a run on ``backend`` (``code``: a search over code steps)."""
    folder = resolve_path(backend.info.name, path, code)
    ppm = load_cached(folder)
    check_text_format(ppm, folder, code)
    return ppm, folder
