"""The ThoughtScope web app: a header naming the loaded model, then one tab per view.

`build_app` lays out the page around an already-loaded backend; `serve` loads the model,
builds the page and serves it on loopback (never a public share link). Each tab is built by
its own ``build_*_tab(backend, ...) -> dict`` function in its own module, so later views
(MCTS, rStar, ...) add a module and one line here.

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

from app.generate_tab import build_generate_tab  # noqa: E402
from app.leco_tab import build_leco_tab  # noqa: E402
from app.mcts_tab import build_mcts_tab, rstar_panel, view_outputs  # noqa: E402
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


def build_app(backend, store=None, *, problems_path: str | Path | None = None) -> gr.Blocks:
    """The whole page around a loaded backend (``ModelBackend`` with ``render_prompt``) and a
    run store (`engine.store.Store`; a temporary one when None).

    Each tab's components, by name, are kept in ``demo.thoughtscope_tabs[tab]``."""
    if store is None:
        import tempfile
        from engine.store import Store
        store = Store(Path(tempfile.mkdtemp(prefix="thoughtscope-")) / "runs.db")
    with gr.Blocks(title=f"{TITLE} — {backend.info.name}", analytics_enabled=False) as demo:
        gr.HTML(header_html(backend), css_template=HEADER_CSS, js_on_load=None, elem_id="ts-header")
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
    backend = load_backend(model, device=device, dtype=dtype, threads=threads, prefix_cache_mb=prefix_cache_mb)
    demo = build_app(backend, store)
    try:
        _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                                **LAUNCH_KWARGS)
    except OSError:
        raise ServeError(f"cannot serve on {host}:{port}: the port is in use (or the address cannot "
                         "be bound): stop the other server or pass another --port") from None
    print(f"ThoughtScope is running at {url} with {backend.info.describe()} (Ctrl+C to stop)",
          flush=True)
    demo.block_thread()
