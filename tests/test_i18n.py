"""app/i18n.py: `t` gives Gradio markers while a page is laid out and finished text elsewhere,
in the language the request, `using` or the environment asks for; the page gets the script
that hands a chosen language to Gradio's frontend."""

from __future__ import annotations

import urllib.request

import gradio as gr
import pytest
from conftest import free_port
from starlette.requests import Request

from app import i18n
from app.i18n import t


def request(headers: dict[str, str], query: str = "") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(),
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_outside_a_page_t_is_english_and_using_zh_is_chinese():
    assert t("Question") == "Question"
    with i18n.using("zh"):
        assert t("Question") == "问题"
        assert t("a key nobody translated") == "a key nobody translated"     # English, not an error
    assert t("Question", lang="zh") == "问题"


def test_fields_are_filled_after_translating():
    key = "{n} rollouts"
    assert t(key, n=5) == "5 rollouts"
    with i18n.using("zh"):
        assert t(key, n=5) == i18n.catalogue("zh")[key].format(n=5)
        assert "5" in t(key, n=5) and "rollouts" not in t(key, n=5)


def test_inside_a_page_t_is_a_gradio_marker_with_the_english_key():
    with gr.Blocks():
        marker = t("Question")
        box = gr.Textbox(label=t("Question"))
    assert isinstance(marker, gr.i18n.I18nData) and marker.key == "Question"
    assert box.label.key == "Question"
    assert i18n.plain(box.label) == "Question" and i18n.plain(box.label, "zh") == "问题"


@pytest.mark.parametrize("headers, query, lang", [
    ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "", "zh"),
    ({"Accept-Language": "en-US,en;q=0.9"}, "", "en"),
    ({"Accept-Language": "fr-FR,zh-TW;q=0.5"}, "", "zh"),           # the first the app speaks
    ({"Accept-Language": "de-DE"}, "", "en"),
    ({}, "", "en"),
    ({"Accept-Language": "en-US", "Cookie": "ts_lang=zh"}, "", "zh"),  # the switch beats the browser
    ({"Accept-Language": "zh-CN", "Cookie": "ts_lang=en"}, "", "en"),
    ({"Cookie": "ts_lang=en"}, "lang=zh", "zh"),                    # the address beats the cookie
    ({"Cookie": "ts_lang=xx; other=1"}, "lang=fr", "en"),
    ({"Cookie": 'bad"cookie;;=', "Accept-Language": "zh"}, "", "zh"),
])
def test_the_request_says_which_language(headers, query, lang):
    assert i18n.lang_of_request(request(headers, query)) == lang


def test_environment_language_for_the_cli():
    assert i18n.lang_from_env({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.lang_from_env({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}) == "en"     # LC_ALL wins
    assert i18n.lang_from_env({"LANGUAGE": "zh_CN:en", "LANG": "en_US"}) == "zh"
    assert i18n.lang_from_env({}) == "en"


def test_bad_language_names_the_field():
    with pytest.raises(ValueError, match="lang must be one of en, zh, got 'fr'"):
        i18n.set_default("fr")
    with pytest.raises(ValueError, match="lang must be one of"):
        with i18n.using("de"):
            pass


def test_the_catalogue_is_valid_and_its_format_fields_match_the_english():
    import string
    zh = i18n.catalogue("zh")
    assert zh, "app/locales/zh.json is empty"
    fields = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
    for key, value in zh.items():
        assert value.strip(), f"empty translation for {key!r}"
        assert fields(key) == fields(value), f"{key!r}: the Chinese has other fields: {value!r}"


def test_the_served_page_starts_with_the_language_script():
    from app.main import LAUNCH_KWARGS
    with gr.Blocks() as demo:
        gr.Textbox(label=t("Question"))
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            **LAUNCH_KWARGS)
    try:
        page = urllib.request.urlopen(url).read().decode()
        config = urllib.request.urlopen(url + "config").read().decode()
    finally:
        demo.close(verbose=False)
    head = page.index("<head>")
    assert page.index("tsSetLang", head) < page.index("window.gradio_config", head)
    assert '"问题"' in config                                   # the catalogue went to the browser
