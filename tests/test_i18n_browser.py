"""Chinese and English in a real headless Chromium (issue 24 part 1): a browser whose language
is Chinese gets every tab's labels, buttons and help lines in Chinese; the header's switch turns
the page to English and keeps the view. Driven like tests/test_app_browser.py; skipped without
Chromium.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import free_port

import test_app_browser as tb
from app import i18n
from app.main import LAUNCH_KWARGS, build_app
from test_app_browser import pytestmark  # noqa: F401  (slow; skipped without Chromium)

# the tabs this change translated, by id; each must show Chinese labels
TABS = ("start", "generate", "search", "leco", "se", "sampling", "sessions", "lessons")
CJK = re.compile(r"[\u4e00-\u9fff]")
LETTERS = re.compile(r"[A-Za-z]{2,}")


@pytest.fixture(scope="module")
def url(tiny_backend):
    demo = build_app(tiny_backend)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    yield url
    demo.close(verbose=False)


@pytest.fixture
def chinese_browser(tmp_path, monkeypatch):
    # headless Chromium takes its language from the environment and --accept-lang (--lang alone is
    # ignored on Linux): navigator.language and Accept-Language both say zh-CN
    monkeypatch.setattr(tb, "FLAGS", [*tb.FLAGS, "--lang=zh-CN", "--accept-lang=zh-CN"])
    monkeypatch.setenv("LANGUAGE", "zh_CN")
    b = tb.Browser(tmp_path / "profile")
    yield b
    b.close()


def tab_texts(browser, tab: str) -> list[str]:
    """The labels, help lines, placeholders and button texts shown in one tab."""
    return browser.js("""(() => {
        const root = document.querySelector('#ts-tab-%s');
        if (!root) return null;
        const out = [];
        root.querySelectorAll('[data-testid="block-info"], [data-testid="block-label"], button, .ts-start label')
            .forEach(e => { const t = e.innerText.trim(); if (t) out.push(t); });
        root.querySelectorAll('textarea[placeholder], input[placeholder]')
            .forEach(e => { if (e.placeholder) out.push(e.placeholder); });
        return out; })()""" % tab)


def untranslated(texts: list[str]) -> list[str]:
    """Texts with English words but no Chinese, other than catalogue entries kept as they are
    (Top-k, LECO, …)."""
    kept = {v for v in i18n.catalogue("zh").values() if not CJK.search(v)}
    return [x for x in texts if LETTERS.search(x) and not CJK.search(x) and x not in kept]


def selected(browser) -> str:
    return browser.js("[...document.querySelectorAll('button[role=tab]')]"
                      ".filter(b => b.getAttribute('aria-selected') === 'true').map(b => b.innerText.trim()).join()")


def test_a_chinese_browser_sees_every_tab_in_chinese_and_the_switch_turns_it_english(url, chinese_browser):
    browser = chinese_browser
    zh = i18n.catalogue("zh")
    browser.goto(url)
    assert browser.wait_for("navigator.language") == "zh-CN"
    browser.wait_for("!!document.querySelector('#ts-start-watch')", what="the Start tab")
    names = {"start": "Start", "generate": "Generate", "search": "Search", "leco": "LECO", "se": "Semantic entropy",
             "sampling": "Sampling lab", "sessions": "Sessions", "lessons": "Lessons"}
    missing = {}                  # checked at the end, so one run shows every tab's gaps and the switch
    for tab in TABS:
        label = zh[names[tab]]
        browser.js("[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.trim() === %s).click()"
                   % json.dumps(label))
        browser.wait_for(f"{json.dumps(label)} === " + "[...document.querySelectorAll('button[role=tab]')]"
                         ".filter(b => b.getAttribute('aria-selected') === 'true').map(b => b.innerText.trim()).join()",
                         what=f"the {names[tab]} tab, in Chinese")
        texts = browser.wait_for(f"(() => {{ const r = document.querySelector('#ts-tab-{tab}');"
                                 " return r && r.innerText.trim() ? 1 : 0; })()", what=f"the {tab} tab's content")
        time.sleep(0.5)
        texts = tab_texts(browser, tab)
        assert len(texts) >= 3, (tab, texts)
        assert sum(bool(CJK.search(x)) for x in texts) >= 3, (tab, texts)
        if untranslated(texts):
            missing[tab] = untranslated(texts)
        if tab == "sessions":     # the table's headers come with the page load's value, in Chinese
            heads = browser.wait_for("(() => { const h = [...document.querySelectorAll('#ts-sessions-table th')]"
                                     ".map(e => e.innerText.trim()).filter(x => x);"
                                     " return h.includes(%s) ? h : null; })()" % json.dumps(zh["session_id"]),
                                     what="the Sessions table's headers in Chinese")
            assert zh["method"] in heads and "session_id" not in heads, heads
    # the tab names themselves
    shown = browser.js("[...document.querySelectorAll('button[role=tab]')].map(b => b.innerText.trim())")
    assert all(zh[names[tab]] in shown for tab in TABS)
    # the header's switch: English, on the same tab, and the address says so
    browser.js("document.querySelector('#ts-lang a[data-ts-lang=\"en\"]').click()")
    browser.wait_for(f"{json.dumps(names['lessons'])} === " + "[...document.querySelectorAll('button[role=tab]')]"
                     ".filter(b => b.getAttribute('aria-selected') === 'true').map(b => b.innerText.trim()).join()",
                     what="the Lessons tab again, in English")
    assert browser.js("new URL(location.href).searchParams.get('lang')") == "en"
    shown = browser.js("[...document.querySelectorAll('button[role=tab]')].map(b => b.innerText.trim())")
    assert {"Start", "Generate", "Search", "Sessions"} <= set(shown)
    assert not any(CJK.search(x) for x in tab_texts(browser, "lessons"))
    # and back: a callback's words follow the switch too (the cookie), not only the page's labels
    browser.js("document.querySelector('#ts-lang a[data-ts-lang=\"zh\"]').click()")
    browser.wait_for("[...document.querySelectorAll('button[role=tab]')].some(b => b.innerText.trim() === %s)"
                     % json.dumps(zh["Search"]), what="Chinese again")
    browser.js("[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.trim() === %s).click()"
               % json.dumps(zh["Generate"]))
    browser.wait_for("!!document.querySelector('#ts-generate')", what="the Generate tab")
    browser.js("document.querySelector('#ts-generate').click()")      # an empty question: the error, in Chinese
    toast = browser.wait_for("[...document.querySelectorAll('[data-testid=toast-text]')]"
                             ".map(e => e.innerText).join('\\n')", what="an error toast")
    assert "问题 为空" in toast, toast          # the engine's message, through app/i18n.py message
    assert missing == {}
