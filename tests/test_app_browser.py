"""The app in a real headless Chromium: the page renders, buttons work, tokens show up.

No browser driver package: ``--dump-dom`` for the static check, and for clicking a tiny
Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (null-separated JSON on file
descriptors 3 and 4). Skipped when /usr/bin/chromium is missing (CI installs the Debian
packages ``chromium`` and ``chromium-driver``).

The README screenshot is made here too, on the embedded default model when it is installed:
``THOUGHTSCOPE_SCREENSHOT=docs/screenshots/generate.png pytest tests/test_app_browser.py -k readme``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port, stored_run

from app.main import LAUNCH_KWARGS, build_app

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason=f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
         "--force-device-scale-factor=1"]
WIDTH, HEIGHT = 1280, 900




@pytest.fixture(scope="module")
def app_url(tiny_backend):
    demo = build_app(tiny_backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(),
                            prevent_thread_lock=True, **LAUNCH_KWARGS)
    yield url
    demo.close(verbose=False)


class CDPError(RuntimeError):
    pass


# what Chromium answers an evaluation sent while the page navigates away: not an error to wait on
NAVIGATING = ("Inspected target navigated or closed", "Execution context was destroyed",
              "Cannot find context with specified id")


class Browser:
    """Headless Chromium driven over the DevTools pipe: one page, commands in sequence."""

    def __init__(self, profile: Path, width: int = WIDTH, height: int = HEIGHT):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # move the child's ends above 10, so the dup2 onto 3 and 4 never clobbers one of them
        hi_in, hi_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child, from_child))
        os.close(to_child)
        os.close(from_child)

        def wire():                                    # in the child, before exec
            os.dup2(hi_in, 3)                          # dup2 makes 3 and 4 inheritable
            os.dup2(hi_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire)
        os.close(hi_in)
        os.close(hi_out)
        self._buf = b""
        self._next_id = 0
        self.session = None
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def send(self, method: str, params: dict | None = None, *, session: bool = True,
             timeout: float = 60) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise CDPError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise CDPError(f"{method}: no reply (browser {'exited' if self.proc.poll() is not None else 'timed out'})")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise CDPError(f"{method}: the browser closed the pipe")
                self._buf += chunk

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except CDPError as e:       # the page is reloading (a language switch): ask the new one
                if not any(m in str(e) for m in NAVIGATING):
                    raise
                value = None
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def hover(self, selector: str) -> None:
        box = self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]})

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        import base64
        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": WIDTH, "height": min(size["height"], 4000), "scale": 1})
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read)
        os.close(self._write)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_dump_dom_shows_the_generate_tab(app_url, tmp_path, tiny_backend):
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=20000",
                          "--dump-dom", app_url + "?tab=generate"], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert 'id="ts-tab-generate"' in dom, out.stderr[-2000:]
    assert re.search(r'role="tab"[^>]*>\s*Generate', dom) or ">Generate<" in dom
    for tier in ("easy", "medium", "hard"):
        assert f"Random {tier} problem" in dom
    assert tiny_backend.info.describe() in dom
    assert "token probability" in dom                             # the legend of the empty view


def test_click_random_then_generate_shows_coloured_tokens(app_url, browser, tmp_path):
    browser.goto(app_url + "?tab=generate")        # the page opens on the Start tab (app/welcome.py)
    browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate button")
    browser.js("document.querySelector('#ts-random-hard').click()")
    question = browser.wait_for("document.querySelector('#ts-question textarea').value",
                                what="a random question")
    assert question.endswith("?")
    browser.wait_for("document.querySelector('#ts-gold').innerText.startsWith('Gold answer:')",
                     what="the gold answer")

    browser.js("document.querySelector('#ts-generate').click()")
    n = browser.wait_for("document.querySelectorAll('#ts-output .ts-tok').length", what="token spans")
    summary = browser.wait_for("document.querySelector('#ts-summary').innerText.trim()", what="the summary")
    assert summary.startswith(f"{n} tokens"), summary
    assert "gold" in summary
    assert browser.js("document.querySelector('#ts-gold').innerText").startswith("Gold answer:")
    colours = browser.js("[...document.querySelectorAll('#ts-output .ts-tok')]"
                         ".map(e => getComputedStyle(e).backgroundColor)")
    assert len(colours) == n and all(c.startswith("rgb(") for c in colours)

    browser.hover("#ts-output .ts-tok")
    tip = browser.js("getComputedStyle(document.querySelector('#ts-output .ts-tok'), '::after').content")
    assert "top alternatives" in tip

    shot = tmp_path / "generate.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_editing_the_question_withdraws_the_gold(app_url, browser):
    browser.goto(app_url + "?tab=generate")        # the page opens on the Start tab (app/welcome.py)
    browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate button")
    browser.js("document.querySelector('#ts-random-easy').click()")
    browser.wait_for("document.querySelector('#ts-gold').innerText.startsWith('Gold answer')")
    browser.js("""(() => { const t = document.querySelector('#ts-question textarea');
                   t.value = t.value + ' And one more?';
                   t.dispatchEvent(new Event('input', {bubbles: true})); })()""")
    browser.wait_for("document.querySelector('#ts-gold').innerText.includes('no longer applies')",
                     what="the gold note to change")


def test_empty_question_shows_an_error_toast_not_a_traceback(app_url, browser):
    browser.goto(app_url + "?tab=generate")        # the page opens on the Start tab (app/welcome.py)
    browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate button")
    browser.js("document.querySelector('#ts-generate').click()")
    toast = browser.wait_for("[...document.querySelectorAll('[data-testid=toast-text]')]"
                             ".map(e => e.innerText).join('\\n')", what="an error toast")
    assert "the question is empty" in toast
    assert "Traceback" not in browser.js("document.body.innerText")


def test_shift_enter_in_the_question_generates(app_url, browser):
    browser.goto(app_url + "?tab=generate")        # the page opens on the Start tab (app/welcome.py)
    browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate button")
    browser.js("document.querySelector('#ts-random-easy').click()")
    browser.wait_for("document.querySelector('#ts-question textarea').value", what="a random question")
    browser.js("document.querySelector('#ts-question textarea').focus()")
    key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "modifiers": 8, "text": "\r"}  # 8: Shift
    browser.send("Input.dispatchKeyEvent", {"type": "keyDown", **key})
    browser.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})
    browser.wait_for("document.querySelectorAll('#ts-output .ts-tok').length", what="token spans")


def open_tab(browser, name: str) -> None:
    browser.wait_for("[...document.querySelectorAll('[role=tab]')].some(e => e.innerText.trim() === %s)"
                     % json.dumps(name), what=f"the {name} tab button")
    browser.js("[...document.querySelectorAll('[role=tab]')].find(e => e.innerText.trim() === %s).click()"
               % json.dumps(name))


def test_search_tab_runs_a_search_and_draws_the_tree(app_url, browser):
    browser.goto(app_url)
    open_tab(browser, "Search")
    browser.wait_for("!!document.querySelector('#ts-search-run')", what="the Run button")
    browser.js("document.querySelector('#ts-search-random-easy').click()")
    browser.wait_for("document.querySelector('#ts-search-question textarea').value", what="a random question")
    browser.js("document.querySelector('#ts-search-run').click()")
    final = browser.wait_for("(() => { const t = document.querySelector('#ts-search-final').innerText;"
                             " return t.includes('Answer') ? t : ''; })()", timeout=120, what="the final answer")
    assert "Chosen by" in final
    points = browser.wait_for("document.querySelectorAll('#ts-search-plot .scatterlayer .point').length",
                              what="tree nodes drawn")
    assert points >= 2
    progress = browser.js("document.querySelector('#ts-search-progress').innerText")
    assert "nodes" in progress and "session" in progress
    # the phase stepper explains the first rollout
    browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes('next phase')).click()")
    browser.wait_for("document.querySelector('#ts-search-explain').innerText.includes('Rollout 1')",
                     what="the phase explanation")
    assert "Traceback" not in browser.js("document.body.innerText")


@pytest.mark.skipif(not os.environ.get("THOUGHTSCOPE_SCREENSHOT"),
                    reason="set THOUGHTSCOPE_SCREENSHOT=docs/screenshots/generate.png to remake the README screenshot")
def test_readme_screenshot(request, tmp_path):
    """A random hard problem answered by the default model (the tiny random one if it is not
    installed), with the least likely token hovered so its alternatives show."""
    from engine.models.registry import DEFAULT_MODEL, EMBEDDED

    installed = EMBEDDED[DEFAULT_MODEL].path() is not None
    backend = request.getfixturevalue("default_backend" if installed else "tiny_backend")
    demo = build_app(backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(),
                            prevent_thread_lock=True, **LAUNCH_KWARGS)
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(url + "?tab=generate")
        browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate button")
        browser.js("document.querySelector('#ts-random-hard').click()")
        browser.wait_for("document.querySelector('#ts-question textarea').value", what="a random question")
        browser.wait_for("document.querySelector('#ts-gold').innerText.startsWith('Gold answer')",
                         what="the gold answer")
        browser.js("document.querySelector('#ts-generate').click()")
        browser.wait_for("document.querySelectorAll('#ts-output .ts-tok').length", what="token spans")
        browser.wait_for("document.querySelector('#ts-summary').innerText.includes('tokens')", what="the summary")
        least = browser.js("""(() => { const t = [...document.querySelectorAll('#ts-output .ts-tok')];
            let best = 0; t.forEach((e, i) => { if (+e.dataset.p < +t[best].dataset.p) best = i; });
            return best + 1; })()""")
        browser.hover(f"#ts-output .ts-tok:nth-child({least})")
        time.sleep(0.3)
        browser.screenshot(Path(os.environ["THOUGHTSCOPE_SCREENSHOT"]))
    finally:
        browser.close()
        demo.close(verbose=False)


def _lab_generate(browser) -> None:
    open_tab(browser, "Sampling lab")
    browser.wait_for("!!document.querySelector('#ts-lab-generate')", what="the lab's Generate button")
    browser.js("document.querySelector('#ts-lab-random').click()")
    browser.wait_for("document.querySelector('#ts-lab-question textarea').value", what="a random question")
    browser.js("document.querySelector('#ts-lab-generate').click()")
    browser.wait_for("document.querySelectorAll('#ts-lab-tokens .ts-tok').length", what="the lab's tokens")
    browser.wait_for("document.querySelectorAll('#ts-lab-pool .bars .point').length", timeout=90,
                     what="the pool bars")
    browser.wait_for("document.querySelector('#ts-lab-orders-text').innerText.includes('llama.cpp')",
                     what="the order table")


def test_sampling_lab_draws_the_pool_view_and_the_orders(app_url, browser):
    browser.goto(app_url)
    _lab_generate(browser)
    text = browser.js("document.querySelector('#ts-lab-position-text').innerText")
    assert "min-p threshold" in text and "top-k" in text
    lines = browser.js("document.querySelectorAll('#ts-lab-generation .scatterlayer .trace').length")
    assert lines >= 6
    assert "Traceback" not in browser.js("document.body.innerText")


@pytest.mark.skipif(not os.environ.get("THOUGHTSCOPE_SAMPLING_SCREENSHOT"),
                    reason="set THOUGHTSCOPE_SAMPLING_SCREENSHOT=docs/screenshots/sampling.png to remake it")
def test_sampling_lab_screenshot(request, tmp_path):
    """The Sampling lab on a random hard problem with the default model, min-p at T=1, at the
    position the tab opens on (the highest-entropy one)."""
    from engine.models.registry import DEFAULT_MODEL, EMBEDDED

    installed = EMBEDDED[DEFAULT_MODEL].path() is not None
    backend = request.getfixturevalue("default_backend" if installed else "tiny_backend")
    demo = build_app(backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(),
                            prevent_thread_lock=True, **LAUNCH_KWARGS)
    browser = Browser(tmp_path / "profile", height=1400)
    try:
        browser.goto(url)
        _lab_generate(browser)
        time.sleep(0.5)
        top = browser.js("document.querySelector('#ts-tabs').getBoundingClientRect().top + window.scrollY")
        bottom = browser.js("(() => { const r = document.querySelector('#ts-lab-generation').getBoundingClientRect();"
                            " return r.bottom + window.scrollY; })()")
        import base64
        data = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": top, "width": WIDTH, "height": bottom - top, "scale": 1}})["data"]
        Path(os.environ["THOUGHTSCOPE_SAMPLING_SCREENSHOT"]).write_bytes(base64.b64decode(data))
    finally:
        browser.close()
        demo.close(verbose=False)


def test_opening_stored_runs_restores_the_form_in_their_own_tabs(tiny_backend, tmp_path, browser):
    """Issue 23: an rStar run opens in the Search view with its question, gold answer, method and
    settings; a LECO run opens in the LECO tab and leaves the Search view as it was."""
    from engine.search import METHODS
    from engine.store import Store
    store = Store(tmp_path / "runs.db")
    rstar = stored_run(store, "rstar", {**METHODS["rstar"].config().to_json(), "rollouts": 7, "max_depth": 4},
                       "Ada has 4 pens and buys 3 more. How many pens?", "7", seed=3)
    leco = stored_run(store, "leco", METHODS["leco"].config().to_json(), "Bo has 9 cups and breaks 2. How many cups?",
                      "7", seed=3)
    demo = build_app(tiny_backend, store)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    try:
        browser.goto(url)

        def open_session(sid):
            open_tab(browser, "Sessions")
            browser.wait_for("!!document.querySelector('#ts-session-id textarea, #ts-session-id input')")
            browser.js("""(() => { const t = document.querySelector('#ts-session-id textarea, #ts-session-id input');
                           t.value = %s; t.dispatchEvent(new Event('input', {bubbles: true})); })()""" % json.dumps(sid))
            time.sleep(0.5)
            browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes('Open in Search'))"
                       ".click()")

        open_session(rstar)
        question = "(document.querySelector('#ts-search-question textarea') || {value: ''}).value"
        browser.wait_for(f"{question}.startsWith('Ada')", what="the run's question in the Search view")
        assert browser.js("document.querySelector('#ts-search-gold-answer textarea, #ts-search-gold-answer input')"
                          ".value") == "7"
        assert "Ada has 4 pens" in browser.js("document.querySelector('#ts-search-question textarea').value")
        browser.js("[...document.querySelectorAll('button')].find(b => b.innerText.trim().startsWith('Settings'))"
                   ".click()")
        browser.wait_for("[...document.querySelectorAll('input[type=number]')].some(e => e.value === '7')",
                         what="the run's 7 rollouts")
        assert "rStar" in browser.js("document.body.innerText")
        open_session(leco)
        browser.wait_for("(document.querySelector('#ts-leco-question textarea') || {value: ''}).value.startsWith('Bo')",
                         what="the LECO run's question in the LECO tab")
        assert browser.js(question).startswith("Ada")       # the Search view keeps the rStar run
        assert "Traceback" not in browser.js("document.body.innerText")
    finally:
        demo.close(verbose=False)
        store.close()
