"""The view in the address: which tab, which stored run, which moment of its timeline, which
node, which lesson page and which language, as a query string a teacher can copy and send
(``?tab=search&session=3f2a…&k=41&node=7&lang=zh``). Opening such a link, or reloading, puts
the page back at that moment.

Two halves:
- writing: small browser-side handlers (``js=`` with no Python function, so they cost no
  server round trip) copy a value into the address with ``history.replaceState`` as it changes:
  a tab chosen, the Search timeline moved, a node inspected, a lesson page turned, a run
  opened or finished (its id is mirrored into a hidden box, ``ts-url-session``, because a
  ``gr.State`` never reaches the browser);
- reading: a load event reads ``gr.Request.query_params`` (`read`), opens the run through the
  Sessions tab's own `open_session` — so in classroom mode a link to a run opens only for the
  user who owns it (or for anyone when it is a shared sample run) — and `seek` moves the
  timeline and the inspector to the moment.

"Copy link" copies the address as it is now. Not here: the language switch and its cookie
(app/i18n.py), what opening a run shows (app/restore.py).
"""

from __future__ import annotations

import json

import gradio as gr

from app import i18n
from app.i18n import t

# "lesson_page", not "page": Gradio reads ?page= itself (a multipage app's page) and fails to
# serve the app for any value it does not know
PARAMS = ("tab", "session", "k", "node", "lesson", "lesson_page", "lang")
MAX_PARAM_CHARS = 200          # longer values are not ours: ignored

# Runs first in the page (i18n.LangScript puts every PAGE_SCRIPTS entry at the top of <head>).
PAGE_SCRIPT = """<script>
(() => {
  const KEYS = %(keys)s;
  // The link's tab is chosen in the page's configuration before Gradio reads it, so that tab is
  // the one drawn first (no flash of the Start tab; the load event still opens the run).
  const wantedTab = new URL(location.href).searchParams.get('tab');
  if (wantedTab) {
    let config;
    Object.defineProperty(window, 'gradio_config', {configurable: true, enumerable: true,
      get() { return config; },
      set(value) {
        try {
          const comps = (value && value.components) || [];
          if (comps.some(c => c.type === 'tabitem' && c.props && c.props.id === wantedTab)) {
            for (const c of comps) {
              if (c.type === 'tabs' && c.props && c.props.elem_id === 'ts-tabs') c.props.selected = wantedTab;
            }
          }
        } catch (e) {}
        config = value;
      }});
  }
  window.tsUrl = {
    link: new URL(location.href).searchParams,     // the address the page was opened with
    // set({k: 41, node: null}): null or '' drops a key; the history entry is replaced, not added
    ready: false,       // true once a link's view is restored: until then the page's own first
                        // events (the first tab selected as it mounts) must not overwrite the link
    set(changes) {
      if (!this.ready) return;
      const u = new URL(location.href);
      for (const [key, value] of Object.entries(changes)) {
        if (!KEYS.includes(key)) continue;
        if (value === null || value === undefined || value === '') u.searchParams.delete(key);
        else u.searchParams.set(key, String(value));
      }
      if (u.toString() !== location.href) history.replaceState(history.state, '', u.toString());
    },
    get(key) { return new URL(location.href).searchParams.get(key); },
    async copy() {
      const link = location.href;
      try { await navigator.clipboard.writeText(link); } catch (e) {
        const box = document.createElement('textarea');          // http:// pages have no clipboard API
        box.value = link; document.body.appendChild(box); box.select();
        try { document.execCommand('copy'); } catch (e2) {}
        box.remove();
      }
      return link;
    },
  };
})();
</script>""" % {"keys": json.dumps(list(PARAMS))}
i18n.PAGE_SCRIPTS.append(PAGE_SCRIPT)


def _whole(value, low: int = 0) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= low else None


def read(params, tabs: set[str] | None = None) -> dict:
    """The view a query string asks for, each value checked: ``tab`` (one of ``tabs``),
    ``session`` (an id or its prefix), ``k`` (events folded, ≥ 0), ``node`` (≥ 0), ``lesson``,
    ``lesson_page`` (≥ 1). A value that is malformed is left out rather than refused: a link with a
    bad part still opens the rest."""
    view: dict = {}
    get = (lambda key: params.get(key)) if params is not None else (lambda key: None)
    tab = get("tab")
    if tab and (tabs is None or tab in tabs):
        view["tab"] = tab
    session = (get("session") or "").strip()
    if session and len(session) <= MAX_PARAM_CHARS and all(ch.isalnum() or ch in "-_" for ch in session):
        view["session"] = session
    for key, low in (("k", 0), ("node", 0), ("lesson_page", 1)):
        n = _whole(get(key), low) if get(key) is not None else None
        if n is not None:
            view[key] = n
    lesson = (get("lesson") or "").strip()
    if lesson and len(lesson) <= MAX_PARAM_CHARS:
        view["lesson"] = lesson
    return view


def from_request(request: gr.Request | None, tabs: set[str] | None = None) -> dict:
    return read(getattr(request, "query_params", None), tabs)


def link(base: str, view: dict) -> str:
    """The address of ``view`` on a server at ``base`` (tests, docs): ``base?tab=…&session=…``."""
    from urllib.parse import urlencode
    query = urlencode([(k, view[k]) for k in PARAMS if view.get(k) not in (None, "")])
    return base.rstrip("/") + "/" + ("?" + query if query else "")


def seek(view: dict | None, wanted: dict | None):
    """After a run opened from a link: the Search view at the link's moment ``k`` (default: as
    opened, at its end) with node ``node`` in the inspector. Returns (timeline, plot, progress,
    final, explanation, node id, inspector); components the link says nothing about are left."""
    from app.inspector import inspect_node
    from app.mcts_tab import view_outputs
    wanted = wanted or {}
    if not view or not view.get("events") or ("k" not in wanted and "node" not in wanted):
        return (gr.skip(),) * 7
    events = view["events"]
    k = min(wanted.get("k", len(events)), len(events))
    shown = view_outputs(events, k)
    node, inspector = gr.skip(), gr.skip()
    if "node" in wanted:
        try:
            inspector, node = inspect_node(view, wanted["node"], k), wanted["node"]
        except gr.Error:            # the node is not there yet at moment k: the tree without it
            pass
    return (gr.Slider(value=k), *shown, node, inspector)


def copy_button() -> gr.Button:
    """The header's "Copy link": copies the address (the view as it is now) to the clipboard."""
    button = gr.Button(t("Copy link"), size="sm", scale=0, min_width=120, elem_id="ts-copy-link")
    button.click(None, js="async () => { const l = await window.tsUrl.copy(); return []; }")
    return button


def track(component, key: str, *, event: str = "change") -> None:
    """Mirror ``component``'s value into the address as ``key`` whenever it changes (browser only)."""
    if key not in PARAMS:
        raise ValueError(f"key must be one of {', '.join(PARAMS)}, got {key!r}")
    getattr(component, event)(None, inputs=[component], js=f"(v) => {{ window.tsUrl.set({{{key}: v}}); return []; }}")


def open_from_link(access, tab_ids, request: gr.Request = None):
    """The page's load event: (opened view or None, the link's view, the run's id).
    A run the user may not open is a gr.Error (one line), as the Sessions tab's Open says it."""
    from app.sessions_tab import open_session
    wanted = from_request(request, set(tab_ids))
    if "session" not in wanted:
        return None, wanted, gr.skip()
    view, _ = open_session(access, wanted["session"], request)
    return view, wanted, view["session_id"]


def tab_from_link(wanted: dict | None):
    """The link's tab, chosen last (after opening a run chose the run's own)."""
    return gr.Tabs(selected=wanted["tab"]) if wanted and wanted.get("tab") else gr.skip()


def session_of(view: dict | None):
    """The hidden box's value for the run on screen (its id), mirrored into the address."""
    return (view or {}).get("session_id") or gr.skip()


def wire(demo, *, tabs, access, search: dict, lessons: dict | None, show_opened, opens=()) -> None:
    """Bind the view to the address (see the module docstring). ``show_opened(event, state)``
    is app/main.py's chain that shows a run an event opened into ``state``; it returns the
    Search view's last step. ``opens``: the other (event, state) pairs that open a run (the
    Sessions tab's Open, the Start tab's watch button), whose run the address then names."""
    from app.auth import with_request
    tab_items = [b for b in tabs.children if isinstance(b, gr.Tab)]
    tab_ids = [b.id for b in tab_items]
    for item in tab_items:            # a tab chosen: its id, in the browser only
        item.select(None, js=f"() => {{ window.tsUrl.set({{tab: {json.dumps(item.id)}}}); return []; }}")
    session = gr.Textbox(visible="hidden", elem_id="ts-url-session")   # mounted, so its change reaches js
    track(session, "session")
    track(search["timeline"], "k")
    search["inspect"].click(None, inputs=[search["node_id"]],
                            js="(n) => { window.tsUrl.set({node: n}); return []; }")
    search["run_event"].then(session_of, inputs=[search["view"]], outputs=[session], api_visibility="private")
    for event, state in opens:
        event.success(session_of, inputs=[state], outputs=[session], api_visibility="private")
    if lessons:
        track(lessons["lesson"], "lesson")
        track(lessons["page"], "lesson_page")

    opened, wanted = gr.State(None), gr.State(None)
    loaded = demo.load(with_request(open_from_link, access, tab_ids), outputs=[opened, wanted, session],
                       api_visibility="private")
    last = show_opened(loaded, opened)
    moment = last.then(seek, inputs=[opened, wanted],
                       outputs=[search["timeline"], search["plot"], search["progress"], search["final"],
                                search["explain"], search["node_id"], search["inspector"]], api_visibility="private")
    moment.then(tab_from_link, inputs=[wanted], outputs=[tabs], api_visibility="private")
    # the moment on screen, written again once it is: opening the run drew its last moment first,
    # and that slider change, mirrored late, could overwrite the link's k (k=388 where the link
    # said 40, in a browser test on a busy machine). Only the keys the link had are written
    moment.then(None, inputs=[search["timeline"], search["node_id"]],
                js="(k, n) => { const l = window.tsUrl.link, c = {};"
                   " if (l.has('k')) c.k = k; if (l.has('node')) c.node = n;"
                   " window.tsUrl.set(c); return []; }")
    # after the link was read (whether its run opened or not): from now on the address follows the page
    loaded.then(None, js="() => { window.tsUrl.ready = true; return []; }")
    if lessons:
        loaded.then(lesson_from_link, inputs=[wanted], outputs=[lessons["lesson"], lessons["page"]],
                    api_visibility="private")


def lesson_from_link(wanted: dict | None):
    """The Lessons tab's lesson and page from the link (left as they are when it names none)."""
    wanted = wanted or {}
    return (wanted["lesson"] if "lesson" in wanted else gr.skip(),
            wanted["lesson_page"] if "lesson_page" in wanted else gr.skip())
