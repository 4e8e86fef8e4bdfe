"""The ThoughtScope web app: a header naming the loaded model, then one tab per view.

`build_app` lays out the page around an already-loaded backend; `serve` loads the model,
builds the page and serves it on loopback (never a public share link). Each tab is built by
its own ``build_*_tab(backend, ...) -> dict`` function in its own module, so later views
(MCTS, rStar, ...) add a module and one line here. The tabs get the backend inside a
`app.model_slot.ModelSlot`, so the header's "Load another model" can replace it for all of
them at once, and a failed load leaves the previous model serving. Beside it the prompt format
(engine/formats.py: auto, embedded, chat with its editable instruction, base) is chosen for
the next load, or set on the loaded model at once; the header names the format in use.

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

from app import i18n, restore, url_state  # noqa: E402
from app.i18n import t  # noqa: E402
from app.auth import Access, Users, load_users, with_request  # noqa: E402
from app.compare_tab import build_compare_tab, wire_compare  # noqa: E402
from app.experiments_tab import build_experiments_tab  # noqa: E402
from app.evolve_tab import build_evolve_tab  # noqa: E402
from app.generate_tab import MODEL_QUEUE, build_generate_tab  # noqa: E402
from app.leco_tab import build_leco_tab  # noqa: E402
from app.lessons.tab import build_lessons_tab  # noqa: E402
from app.mcts_tab import build_mcts_tab, rstar_panel  # noqa: E402
from app.model_slot import ModelSlot  # noqa: E402
from app.sampling_tab import build_sampling_tab  # noqa: E402
from app.se_tab import build_se_tab  # noqa: E402
from app.sessions_tab import build_sessions_tab, open_session, refresh, selected_id, session_table  # noqa: E402
from app.welcome import build_welcome, wire_welcome  # noqa: E402
from engine import formats  # noqa: E402
from engine.inputs import check_text, number  # noqa: E402

TITLE = "ThoughtScope"
HEADER_CSS = """
.ts-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; padding: 4px 2px; }
.ts-header h1 { font-size: 24px; font-weight: 700; margin: 0; }
.ts-header .ts-model { font-size: 14px; opacity: 0.85; }
.ts-header code { font-size: 13px; }
.ts-header .ts-lang { margin-left: auto; font-size: 14px; }
.ts-header .ts-lang a { cursor: pointer; padding: 0 4px; }
html[data-ts-lang="zh"] .ts-header .ts-lang a[data-ts-lang="zh"],
html[data-ts-lang="en"] .ts-header .ts-lang a[data-ts-lang="en"] { font-weight: 700; text-decoration: none; }
"""
# What `serve` passes to launch(); tests launch with the same. Why each: docs/classroom.md.
LAUNCH_KWARGS = dict(ssr_mode=False, share=False, quiet=True, enable_monitoring=False,
                     mcp_server=False, pwa=False, run_history=False, allowed_paths=None,
                     max_file_size="50mb", show_error=False, strict_cors=True, max_threads=16,
                     i18n=i18n.i18n(), app_kwargs={"middleware": i18n.middleware()})   # app/i18n.py
QUEUE_SIZE = 32                 # events waiting at most (a full queue turns new ones away)
QUEUE_SIZE_MAX = 10_000
CLASSROOM_RUN_LIMIT_S = 120.0   # classroom mode's default limit on one search's wall time (--run-limit)
RUN_LIMIT_MAX_S = 86_400.0
DEFAULT_CONCURRENCY = 4         # non-model events of one kind at once; model events: 1 (MODEL_QUEUE)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FORMAT_LABELS = {"auto": "auto: chosen from the model", "embedded": "embedded: ThoughtScope's arithmetic model",
                 "chat": "chat: the model's chat template", "base": "base: a few-shot prompt"}   # t() keys
INSTRUCTED = ("auto", "chat")   # the formats the instruction box applies to (auto may pick chat)

# The header's language switch: each name in its own language. The page's script (app/i18n.py)
# catches the click, sets the cookie and the address (keeping the rest of it) and reloads.
LANG_SWITCH = ('<span class="ts-lang" id="ts-lang"><a data-ts-lang="zh" href="?lang=zh">中文</a>|'
               '<a data-ts-lang="en" href="?lang=en">English</a></span>')


class ServeError(ValueError):
    """The server could not start (e.g. the port is taken); the message says what to do.

    A ValueError so that the CLI prints it as one line."""


def header_html(backend) -> str:
    info = backend.info
    # made in the language of the request (the page's load event redraws it for the browser's)
    words = t("Model: <b>{model}</b> &middot; context {context} tokens &middot; format <b>{format}</b>",
              model=html.escape(info.describe()), context=f"{info.context_length:,}",
              format=html.escape(formats.format_of(backend).name))
    return f'<div class="ts-header"><h1>{TITLE}</h1><span class="ts-model">{words}</span>{LANG_SWITCH}</div>'


def header_now(slot) -> str:
    """The header in the language of the page that asks (its load event)."""
    return header_html(slot)


def welcome_problems(problems_path=None) -> list:
    """The easy problems the Start tab's "Run a search now" picks from (the Search tab's)."""
    from engine.demo_model.problems import load_problems
    from engine.evaluation.evaluate import HELDOUT
    return load_problems(Path(problems_path) if problems_path is not None else HELDOUT, "easy")


def format_options(name, instruction) -> dict:
    """The format choice and instruction box as load_backend's options; a gr.Error for a format
    that does not exist or an instruction that is no usable text. The instruction goes with
    ``chat`` and ``auto`` only (the other formats have none)."""
    if name not in formats.CHOICES:
        raise gr.Error(t("format must be one of {choices}, got {value}", choices=", ".join(formats.CHOICES),
                         value=repr(name)), print_exception=False)
    if name not in INSTRUCTED or instruction is None:
        return {"format": name}
    try:
        check_text(instruction, "the instruction", required=False)
    except ValueError as e:
        raise gr.Error(i18n.message(e), print_exception=False) from None
    return {"format": name, "instruction": instruction}


def load_model(slot: ModelSlot, model: str, format: str = "auto", instruction: str | None = None,
               server: str | None = None):
    """The Model box's Load, with the chosen prompt format: (header, status) for the new model,
    or a gr.Error that says the previous model is still loaded. With a ``server`` URL the model
    runs on that OpenAI-compatible server and the model box names one of its models (blank: the
    only one it serves; engine/models/server_backend.py)."""
    from engine.models.base import ModelLoadError
    server = (server or "").strip()
    if not (model or "").strip() and not server:
        raise gr.Error(t("type a model to load: an embedded name, a local folder, a .gguf file or a hub id"),
                       print_exception=False)
    options = format_options(format, instruction)
    if server:
        options.update(server=server, server_model=(model or "").strip() or None)
    try:
        described = slot.swap(model, **options)
    except ModelLoadError as e:
        raise gr.Error(i18n.message(e), print_exception=False) from None
    return (header_html(slot), t("Loaded **{model}** with the **{format}** format.", model=html.escape(described),
                                 format=formats.format_of(slot).name))


def switch_format(slot: ModelSlot, format: str, instruction: str | None = None):
    """"Use this format now": the loaded model runs the chosen format from its next run on,
    without a reload: (header, status), or a gr.Error with the model left as it was."""
    options = format_options(format, instruction)
    try:
        fmt = slot.set_format(options["format"], instruction=options.get("instruction"))
    except ValueError as e:
        raise gr.Error(i18n.message(e), print_exception=False) from None
    key = ("**{model}** now runs the **{format}** format (chosen by auto); runs from now on use it."
           if format == "auto" else "**{model}** now runs the **{format}** format; runs from now on use it.")
    return header_html(slot), t(key, model=html.escape(slot.info.name), format=fmt.name)


def instruction_box(format: str):
    """The instruction box shows for the formats it applies to."""
    return gr.Textbox(visible=format in INSTRUCTED)


def model_switcher(slot: ModelSlot) -> dict:
    """The "Load another model" accordion under the header: a model box, the prompt format (and
    the chat instruction) for it, and a button that sets the format on the loaded model now.
    Built in the current layout; returns its components by name (wired by `build_app`)."""
    c: dict = {}
    chosen = slot.format_option("format", "auto")
    with gr.Accordion(t("Load another model"), open=False, elem_id="ts-model"):
        with gr.Row():
            c["model"] = gr.Textbox(label=t("An embedded model name, a local folder, a .gguf file or a hub id "
                                            "(hub ids need network)"), scale=4, elem_id="ts-model-name")
            c["load"] = gr.Button(t("Load"), scale=0, elem_id="ts-model-load")
        c["server"] = gr.Textbox(label=t("…or a server URL (vLLM, SGLang, llama.cpp's server): the box above then names "
                                         "one of its models (blank: its only one). The Sampling lab cannot run "
                                         "through a server, which returns only the top-k alternatives"),
                                 placeholder="http://127.0.0.1:8080", elem_id="ts-model-server")
        with gr.Row():
            c["format"] = gr.Dropdown([(t(FORMAT_LABELS[f]), f) for f in formats.CHOICES], value=chosen,
                                      label=t("Prompt format (applies to the next Load, or now)"), scale=4,
                                      elem_id="ts-model-format")
            c["apply_format"] = gr.Button(t("Use this format now"), scale=0, elem_id="ts-format-apply")
        c["instruction"] = gr.Textbox(slot.format_option("instruction") or formats.CHAT_INSTRUCTION, lines=2,
                                      label=t("Instruction before the question (chat format)"),
                                      visible=chosen in INSTRUCTED, elem_id="ts-model-instruction")
        c["status"] = gr.Markdown("", elem_id="ts-model-status")
    return c


def build_app(backend, store=None, *, problems_path: str | Path | None = None,
              multi_user: bool = False, model_switch: bool | None = None,
              run_limit_s: float | None = None) -> gr.Blocks:
    """The whole page around a loaded backend (``ModelBackend`` with ``render_prompt``, or a
    `ModelSlot` holding one) and a run store (`engine.store.Store`; a temporary one when None).
    With ``model_switch`` (default: when not ``multi_user``) the header has a box to load another
    model in its place; in classroom mode one user must not swap everyone's model.

    ``multi_user`` (classroom mode, launched with ``auth``): each stored run belongs to the
    logged-in user who made it, and every handler that reads or writes runs sees only that
    user's runs and the shared ones (app/auth.py, docs/classroom.md).

    ``run_limit_s``: a Search, LECO or Semantic-entropy run ends that many seconds after it
    starts, keeping what it found (`RunControl`; None: no limit).

    Each tab's components, by name, are kept in ``demo.thoughtscope_tabs[tab]``."""
    backend = backend if isinstance(backend, ModelSlot) else ModelSlot(backend)
    model_switch = not multi_user if model_switch is None else model_switch
    if store is None:
        import tempfile
        from engine.store import Store
        store = Store(Path(tempfile.mkdtemp(prefix="thoughtscope-")) / "runs.db")
    access = Access(store, multi_user=multi_user)
    with gr.Blocks(title=f"{TITLE} — {backend.info.name}", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            header = gr.HTML(header_html(backend), css_template=HEADER_CSS, js_on_load=None, elem_id="ts-header",
                             scale=10)
            url_state.copy_button()              # the address holds the view (app/url_state.py)
        # the header again in the page's language (it was made before any browser asked)
        demo.load(functools.partial(header_now, backend), outputs=[header], api_visibility="private")
        if model_switch:
            m = model_switcher(backend)
            # in the model queue: each waits for a running search instead of changing the model under it
            m["load"].click(functools.partial(load_model, backend),
                            inputs=[m["model"], m["format"], m["instruction"], m["server"]],
                            outputs=[header, m["status"]], api_name="load_model", concurrency_limit=1,
                            concurrency_id=MODEL_QUEUE)
            m["apply_format"].click(functools.partial(switch_format, backend), inputs=[m["format"], m["instruction"]],
                                    outputs=[header, m["status"]], api_name="set_format", concurrency_limit=1,
                                    concurrency_id=MODEL_QUEUE)
            m["format"].change(instruction_box, inputs=[m["format"]], outputs=[m["instruction"]],
                               api_visibility="private")
        with gr.Tabs(elem_id="ts-tabs") as tabs:
            with gr.Tab(t("Start"), id="start", elem_id="ts-tab-start"):     # the first screen (app/welcome.py)
                welcome = build_welcome()
            with gr.Tab(t("Generate"), id="generate", elem_id="ts-tab-generate"):
                generate = build_generate_tab(backend, problems_path=problems_path, store=access)
            with gr.Tab(t("Search"), id="search", elem_id="ts-tab-search"):
                search = build_mcts_tab(backend, access, problems_path=problems_path, run_limit_s=run_limit_s)
            with gr.Tab(t("LECO"), id="leco", elem_id="ts-tab-leco"):
                leco = build_leco_tab(backend, access, problems_path=problems_path, run_limit_s=run_limit_s)
            with gr.Tab(t("Semantic entropy"), id="se", elem_id="ts-tab-se"):
                se = build_se_tab(backend, access, problems_path=problems_path, run_limit_s=run_limit_s)
            with gr.Tab(t("Sampling lab"), id="sampling", elem_id="ts-tab-sampling"):
                sampling = build_sampling_tab(backend, problems_path=problems_path)
            with gr.Tab(t("Sessions"), id="sessions", elem_id="ts-tab-sessions"):
                sessions = build_sessions_tab(access)
            with gr.Tab(t("Compare"), id="compare", elem_id="ts-tab-compare"):
                compare = build_compare_tab(access)
            with gr.Tab(t("Experiments"), id="experiments", elem_id="ts-tab-experiments"):
                experiments = build_experiments_tab(access)
            with gr.Tab(t("Lessons"), id="lessons", elem_id="ts-tab-lessons"):
                lessons = build_lessons_tab()
            with gr.Tab(t("Evolution"), id="evolve", elem_id="ts-tab-evolve"):
                evolve = build_evolve_tab(store)
        demo.thoughtscope_tabs = {"search": search, "generate": generate, "sessions": sessions,
                                  "leco": leco, "se": se, "sampling": sampling, "compare": compare,
                                  "experiments": experiments}
        demo.thoughtscope_tabs["evolve"] = evolve
        demo.thoughtscope_tabs["lessons"] = lessons
        demo.thoughtscope_store = store
        demo.thoughtscope_model = backend
        demo.thoughtscope_access = access
        # Opening a stored session shows it in its method's tab (app/restore.py), at its last event,
        # with the question, gold answer, method and settings it ran with.
        opened = gr.State(None)
        search_form = [search[k] for k in ("question", "gold", "picked", "gold_answer", "method", "seed",
                                           *restore.SEARCH_SETTINGS)]
        leco_form = [leco[k] for k in ("question", "gold", "picked", "seed", *restore.LECO_SETTINGS)]
        se_form = [se[k] for k in ("question", "gold", "picked", "model", "method", "seed", *restore.SE_SETTINGS)]
        shown = sessions["open"].click(
            with_request(open_session, access), inputs=[sessions["session_id"]],
            outputs=[opened, sessions["status"]], api_name="open_session")

        def show_opened(shown, opened):
            """The run an event opened into the ``opened`` state, in its tab; returns the Search
            view's last step. Also for the Start tab's watch button and a link (app/url_state.py)."""
            last = shown.success(
                restore.show_in_search, inputs=[opened, search["picked"]],
                outputs=[search["view"], search["plot"], search["progress"], search["final"], search["explain"],
                         search["timeline"], search["inspector"], search["pairs"], *search_form],
                api_visibility="private",
            ).then(rstar_panel, inputs=[search["view"], search["timeline"]], outputs=[search["rstar_panel"]],
                   api_visibility="private")
            shown.success(restore.show_in_leco, inputs=[opened, leco["picked"]],
                          outputs=[leco["heatmap"], leco["steps"], leco["diff"], leco["summary"], leco["progress"],
                                   leco["view"], *leco_form], api_visibility="private")
            shown.success(restore.show_in_se, inputs=[opened, se["picked"]],
                          outputs=[se["bubbles"], se["numbers"], se["bar"], se["retrieval"], se["table"],
                                   se["events"], se["status"], *se_form], api_visibility="private")
            shown.success(restore.opened_tab, inputs=[opened], outputs=[tabs], api_visibility="private")
            return last

        show_opened(shown, opened)
        # a self-evolution round's example trees (app/evolve_tab.py) open the same way
        show_opened(evolve["open"].click(with_request(open_session, access), inputs=[evolve["example"]],
                                          outputs=[opened, evolve["status"]], api_name="open_evolution_example"),
                    opened)
        # Compare (app/compare_tab.py): from the Sessions tab and the Search view; a run opened in the
        # Search view gets its token cost beside the same problem's other runs
        wire_compare(compare, sessions=sessions, search=search, tabs=tabs, store=access, opened=shown,
                     opened_state=opened)
        # a row of the Sessions tab's failures list opens its run (app/triage_view.py)
        failures = sessions["failures"]
        picked = failures["table"].select(selected_id, inputs=[failures["table"]], outputs=[sessions["session_id"]],
                                          api_visibility="private").success(
            with_request(open_session, access), inputs=[sessions["session_id"]], outputs=[opened, sessions["status"]],
            api_visibility="private")
        show_opened(picked, opened)
        # A finished run shows up in the Sessions list.
        filters = [sessions["method"], sessions["correct"], sessions["model"]]
        leco["run_event"].then(with_request(session_table, access), inputs=filters,
                               outputs=[sessions["table"]], api_visibility="private")
        generate["run_event"].then(with_request(session_table, access), inputs=filters,
                                   outputs=[sessions["table"]], api_visibility="private")
        search["run_event"].then(with_request(session_table, access), inputs=filters,
                                 outputs=[sessions["table"]],
                                 api_visibility="private")
        # The Start tab's three buttons, and the view in the address (tab, run, moment, node, lesson page)
        watched = wire_welcome(welcome, access=access, search=search, tabs=tabs, lessons=lessons,
                               problems=welcome_problems(problems_path), show_opened=show_opened)
        url_state.wire(demo, tabs=tabs, access=access, search=search, lessons=lessons, show_opened=show_opened,
                       opens=[(shown, opened), watched])
        if multi_user:   # the page was built with the shared runs only: list the user's own
            demo.load(with_request(refresh, access), inputs=filters,
                      outputs=[sessions["table"], sessions["model"]], api_visibility="private")
    return demo


def is_loopback(host: str) -> bool:
    import ipaddress
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, users: Users | None, tls: bool = False) -> str | None:
    """The warning line for a server others can reach without logging in, or whose passwords
    would cross the network in clear text (None when fine)."""
    if is_loopback(host):
        return None
    if users is None:
        return (f"thoughtscope: warning: serving on {host} without --auth: anyone who can reach this "
                "address can run the model and open, export and delete every stored run")
    if not tls:
        return (f"thoughtscope: warning: serving on {host} over plain HTTP: passwords cross the network "
                "unencrypted; use --ssl-certfile/--ssl-keyfile (or a TLS proxy) off a trusted network")
    return None


def check_launch_options(queue_size, ssl_certfile=None, ssl_keyfile=None, run_limit_s=None) -> None:
    """ValueError for a queue size or run limit out of range, or half an SSL pair (before the
    slow model load)."""
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or not 1 <= queue_size <= QUEUE_SIZE_MAX:
        raise ValueError(f"queue_size must be a whole number from 1 to {QUEUE_SIZE_MAX}, got {queue_size!r}")
    if run_limit_s is not None:
        number(run_limit_s, "run_limit_s", 0, RUN_LIMIT_MAX_S)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together: give both or neither")


def effective_run_limit(run_limit_s: float | None, *, classroom: bool) -> float:
    """`serve`'s limit on one run in seconds (0: none): as given, else CLASSROOM_RUN_LIMIT_S in
    classroom mode and none on a one-person server."""
    if run_limit_s is not None:
        return float(run_limit_s)
    return CLASSROOM_RUN_LIMIT_S if classroom else 0.0


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, *, users: Users | None = None,
               queue_size: int = QUEUE_SIZE, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
               blocked_paths: list[str | Path] = ()):
    """Queue and launch ``demo`` as `serve` does (LAUNCH_KWARGS, never a share link); ``users``
    turns on the login page; ``blocked_paths`` are files Gradio must never serve (the run
    database, the users file), on top of Gradio's rule of serving only files it created.
    Returns launch()'s (app, local url, share url); raises `ServeError` when the address
    cannot be bound."""
    check_launch_options(queue_size, ssl_certfile, ssl_keyfile)
    demo.queue(max_size=queue_size, default_concurrency_limit=DEFAULT_CONCURRENCY)
    auth = dict(auth=users.check, auth_message="ThoughtScope: log in with the name and password you were "
                "given. Your runs are visible only to you.") if users is not None else {}
    try:
        return demo.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                           ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                           blocked_paths=[str(Path(p).resolve()) for p in blocked_paths] or None,
                           **auth, **LAUNCH_KWARGS)
    except OSError:
        raise ServeError(f"cannot serve on {host}:{port}: the port is in use (or the address cannot "
                         "be bound): stop the other server or pass another --port") from None


def serve(model: str, host: str = "127.0.0.1", port: int = 7860, db: str | None = None,
          device: str = "auto", dtype: str = "auto", threads: int | None = None,
          prefix_cache_mb: float | None = None, auth: str | None = None, queue_size: int = QUEUE_SIZE,
          ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
          run_limit_s: float | None = None, format_options: dict | None = None,
          server_options: dict | None = None) -> None:
    """Load ``model``, print the URL and serve the app until interrupted.
    ``server_options`` (server, server_model, api_key_env) run it on an OpenAI-compatible server
    instead (engine/models/server_backend.py).

    ``format_options`` (format, instruction, exemplars, max_solution_tokens: engine/formats.py)
    set the prompt format, for this model and any the app loads later.
    ``db`` is the SQLite file for runs (default: $THOUGHTSCOPE_DB or the user data folder); a
    database with no sessions gets the recorded sample runs, so a first start shows trees.
    ``auth`` is a users file (classroom mode, docs/classroom.md): a login page, and each user
    sees only their own runs. ``run_limit_s`` caps one search's wall time (0: no cap; default
    CLASSROOM_RUN_LIMIT_S with ``auth``, none without). Raises `AuthFileError` for an unusable
    users file, `engine.models.base.ModelLoadError` when the model cannot be loaded,
    `StoreError` for an unusable database and `ServeError` when the port cannot be bound."""
    import sys
    from engine.models.registry import load_backend
    from engine.sample_runs import import_samples
    from engine.store import Store, default_db_path

    check_launch_options(queue_size, ssl_certfile, ssl_keyfile, run_limit_s)    # before the slow model load
    users = load_users(auth) if auth is not None else None
    run_limit_s = effective_run_limit(run_limit_s, classroom=users is not None)
    warning = exposure_warning(host, users, tls=ssl_certfile is not None)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    store = Store(db or default_db_path())
    imported = import_samples(store)
    if imported:
        print(f"Imported {len(imported)} sample runs into {store.path}", flush=True)
    load_kwargs = dict(device=device, dtype=dtype, threads=threads, prefix_cache_mb=prefix_cache_mb,
                       **(format_options or {}))
    backend = ModelSlot(load_backend(model, **load_kwargs, **(server_options or {})), **load_kwargs)
    demo = build_app(backend, store, multi_user=users is not None, run_limit_s=run_limit_s or None)
    db_files = [store.path, *(store.path.with_name(store.path.name + x) for x in ("-wal", "-shm"))]
    _, url, _ = launch_app(demo, host, port, users=users, queue_size=queue_size, ssl_certfile=ssl_certfile,
                           ssl_keyfile=ssl_keyfile, blocked_paths=[*db_files, *([auth] if auth else [])])
    who = f" for {len(users)} user{'s' * (len(users) != 1)} of {users.path}" if users is not None else ""
    who += f"; each search stops after {run_limit_s:g} s" if run_limit_s else ""
    print(f"ThoughtScope is running at {url} with {backend.info.describe()}{who} (Ctrl+C to stop)",
          flush=True)
    demo.block_thread()
