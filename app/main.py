"""The ThoughtScope web app: a header naming the loaded model, then one tab per view.

`build_app` lays out the page around an already-loaded backend; `serve` loads the model,
builds the page and serves it on loopback (never a public share link). Each tab is built by
its own ``build_*_tab(backend, ...) -> dict`` function in its own module, so later views
(MCTS, rStar, ...) add a module and one line here. The tabs get the backend inside a
`app.model_slot.ModelSlot`, so the header's "Load another model" can replace it for all of
them at once, and a failed load leaves the previous model serving.

All custom CSS lives in the components' own ``css_template``, so the page looks the same
whether `serve` or a test launches it.

Not here: the tabs' callbacks (app/generate_tab.py), token HTML (app/figures.py).
"""

from __future__ import annotations

import functools
import html
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # before gradio is imported

import gradio as gr  # noqa: E402

from app.generate_tab import MODEL_QUEUE, build_generate_tab  # noqa: E402
from app.leco_tab import build_leco_tab  # noqa: E402
from app.mcts_tab import build_mcts_tab, rstar_panel, view_outputs  # noqa: E402
from app.model_slot import ModelSlot  # noqa: E402
from app.sampling_tab import build_sampling_tab  # noqa: E402
from app.se_tab import build_se_tab  # noqa: E402
from app.sessions_tab import build_sessions_tab, open_session, session_rows  # noqa: E402

TITLE = "ThoughtScope"
HEADER_CSS = """
.ts-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; padding: 4px 2px; }
.ts-header h1 { font-size: 24px; font-weight: 700; margin: 0; }
.ts-header .ts-model { font-size: 14px; opacity: 0.85; }
.ts-header code { font-size: 13px; }
"""
# What `serve` passes to launch(); tests launch with the same.
LAUNCH_KWARGS = dict(ssr_mode=False, share=False, quiet=True, enable_monitoring=False)


class ServeError(ValueError):
    """The server could not start (e.g. the port is taken); the message says what to do.

    A ValueError so that the CLI prints it as one line."""


def header_html(backend) -> str:
    info = backend.info
    return (f'<div class="ts-header"><h1>{TITLE}</h1>'
            f'<span class="ts-model">Model: <b>{html.escape(info.describe())}</b>'
            f' &middot; context {info.context_length:,} tokens</span></div>')


def load_model(slot: ModelSlot, model: str):
    """The Model box's Load: (header, status) for the new model, or a gr.Error that says the
    previous model is still loaded."""
    from engine.models.base import ModelLoadError
    if not (model or "").strip():
        raise gr.Error("type a model to load: an embedded name, a local folder, a .gguf file or a hub id",
                       print_exception=False)
    try:
        described = slot.swap(model)
    except ModelLoadError as e:
        raise gr.Error(str(e), print_exception=False) from None
    return header_html(slot), f"Loaded **{html.escape(described)}**."


def build_app(backend, store=None, *, problems_path: str | Path | None = None,
              model_switch: bool = True) -> gr.Blocks:
    """The whole page around a loaded backend (``ModelBackend`` with ``render_prompt``, or a
    `ModelSlot` holding one) and a run store (`engine.store.Store`; a temporary one when None).
    With ``model_switch`` the header has a box to load another model in its place.

    Each tab's components, by name, are kept in ``demo.thoughtscope_tabs[tab]``."""
    backend = backend if isinstance(backend, ModelSlot) else ModelSlot(backend)
    if store is None:
        import tempfile
        from engine.store import Store
        store = Store(Path(tempfile.mkdtemp(prefix="thoughtscope-")) / "runs.db")
    with gr.Blocks(title=f"{TITLE} — {backend.info.name}", analytics_enabled=False) as demo:
        header = gr.HTML(header_html(backend), css_template=HEADER_CSS, js_on_load=None, elem_id="ts-header")
        if model_switch:
            with gr.Accordion("Load another model", open=False, elem_id="ts-model"):
                with gr.Row():
                    model_box = gr.Textbox(label="An embedded model name, a local folder, a .gguf file or a hub id "
                                                 "(hub ids need network)", scale=4, elem_id="ts-model-name")
                    load = gr.Button("Load", scale=0, elem_id="ts-model-load")
                model_status = gr.Markdown("", elem_id="ts-model-status")
            # in the model queue: it waits for a running search instead of swapping under it
            load.click(functools.partial(load_model, backend), inputs=[model_box], outputs=[header, model_status],
                       api_name="load_model", concurrency_limit=1, concurrency_id=MODEL_QUEUE)
        with gr.Tabs(elem_id="ts-tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="ts-tab-generate"):
                generate = build_generate_tab(backend, problems_path=problems_path)
            with gr.Tab("Search", id="search", elem_id="ts-tab-search"):
                search = build_mcts_tab(backend, store, problems_path=problems_path)
            with gr.Tab("LECO", id="leco", elem_id="ts-tab-leco"):
                leco = build_leco_tab(backend, store, problems_path=problems_path)
            with gr.Tab("Semantic entropy", id="se", elem_id="ts-tab-se"):
                se = build_se_tab(backend, store, problems_path=problems_path)
            with gr.Tab("Sampling lab", id="sampling", elem_id="ts-tab-sampling"):
                sampling = build_sampling_tab(backend, problems_path=problems_path)
            with gr.Tab("Sessions", id="sessions", elem_id="ts-tab-sessions"):
                sessions = build_sessions_tab(store)
        demo.thoughtscope_tabs = {"search": search, "generate": generate, "sessions": sessions,
                                  "leco": leco, "se": se, "sampling": sampling}
        demo.thoughtscope_store = store
        demo.thoughtscope_model = backend
        # Opening a stored session shows it in the Search tab, at its last event.
        sessions["open"].click(
            functools.partial(open_session, store), inputs=[sessions["session_id"]],
            outputs=[search["view"], sessions["status"]], api_visibility="private",
        ).success(
            lambda view: (*view_outputs(view["events"]), gr.Slider(maximum=len(view["events"]),
                                                                   value=len(view["events"])),
                          gr.Tabs(selected="search")),
            inputs=[search["view"]],
            outputs=[search["plot"], search["progress"], search["final"], search["explain"], search["timeline"], tabs],
            api_visibility="private",
        ).then(rstar_panel, inputs=[search["view"], search["timeline"]], outputs=[search["rstar_panel"]],
               api_visibility="private")
        # A finished run shows up in the Sessions list.
        leco["run_event"].then(lambda m, k, mo: session_rows(store, m, k, mo),
                               inputs=[sessions["method"], sessions["correct"], sessions["model"]],
                               outputs=[sessions["table"]], api_visibility="private")
        search["run_event"].then(lambda m, k, mo: session_rows(store, m, k, mo),
                                 inputs=[sessions["method"], sessions["correct"], sessions["model"]],
                                 outputs=[sessions["table"]],
                                 api_visibility="private")
    return demo


def serve(model: str, host: str = "127.0.0.1", port: int = 7860, db: str | None = None,
          device: str = "auto", dtype: str = "auto", threads: int | None = None,
          prefix_cache_mb: float | None = None) -> None:
    """Load ``model``, print the URL and serve the app until interrupted.

    ``db`` is the SQLite file for runs (default: $THOUGHTSCOPE_DB or the user data folder); a
    database with no sessions gets the recorded sample runs, so a first start shows trees.
    Raises `engine.models.base.ModelLoadError` when the model cannot be loaded, `StoreError`
    for an unusable database and `ServeError` when the port cannot be bound."""
    from engine.models.registry import load_backend
    from engine.sample_runs import import_samples
    from engine.store import Store, default_db_path

    store = Store(db or default_db_path())
    imported = import_samples(store)
    if imported:
        print(f"Imported {len(imported)} sample runs into {store.path}", flush=True)
    load_kwargs = dict(device=device, dtype=dtype, threads=threads, prefix_cache_mb=prefix_cache_mb)
    demo = build_app(ModelSlot(load_backend(model, **load_kwargs), **load_kwargs), store)
    try:
        _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                                **LAUNCH_KWARGS)
    except OSError:
        raise ServeError(f"cannot serve on {host}:{port}: the port is in use (or the address cannot "
                         "be bound): stop the other server or pass another --port") from None
    print(f"ThoughtScope is running at {url} with {demo.thoughtscope_model.info.describe()} (Ctrl+C to stop)",
          flush=True)
    demo.block_thread()
