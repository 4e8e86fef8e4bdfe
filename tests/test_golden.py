"""Golden runs: every recorded session in sample_runs/ is re-run with the same model, config and
seed and must produce the same events, byte for byte."""

import json
from pathlib import Path

import pytest

from engine import events as E
from engine.search import METHODS

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "sample_runs").glob("*.json"))


def test_there_are_sample_runs_of_mcts_and_greedy():
    methods = {json.loads(f.read_text())["session"]["method"] for f in SAMPLES}
    assert {"mcts", "greedy"} <= methods


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_recorded_session_replays_byte_for_byte(default_backend, path):
    data = json.loads(path.read_text())
    s = data["session"]
    assert s["model"] == default_backend.info.name
    m = METHODS[s["method"]]
    rerun = [ev.dumps() for ev in m.run(s["question"], default_backend, config=m.config(**s["config"]),
                                        seed=s["seed"], gold=s["gold"])]
    assert rerun == [E.from_json(ev).dumps() for ev in data["events"]]
