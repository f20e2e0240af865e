"""Query normalisation, plugin-config reading and page-to-text reduction."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2

from services.tools.config import GOOGLE_API_URL, tools_config_from_plugin_config
from services.tools.websearch import normalise_query
from services.tools.websearch.page_fetch import page_text


def test_queries_differing_in_case_and_spacing_are_the_same_search() -> None:
    assert normalise_query("  Rust   ASYNC\tbook ") == normalise_query("rust async book")


def test_result_limit_defaults_to_five_and_caps_at_ten() -> None:
    config = registry_pb2.PluginConfig()
    config.web_search.enabled = True
    config.web_search.provider = "brave"
    config.web_search.brave.api_key = "k"
    assert tools_config_from_plugin_config(config).web_search.result_limit == 5
    config.web_search.brave.result_limit = 50
    assert tools_config_from_plugin_config(config).web_search.result_limit == 10


def test_google_needs_an_engine_id_to_be_configured() -> None:
    config = registry_pb2.PluginConfig()
    config.web_search.enabled = True
    config.web_search.provider = "google"
    config.web_search.google.api_key = "k"
    assert not tools_config_from_plugin_config(config).web_search.configured
    config.web_search.google.search_engine_id = "cx"
    web = tools_config_from_plugin_config(config).web_search
    assert web.configured and web.endpoint == GOOGLE_API_URL


def test_api_key_is_not_in_the_settings_repr() -> None:
    config = registry_pb2.PluginConfig()
    config.web_search.brave.api_key = "super-secret"
    assert "super-secret" not in repr(tools_config_from_plugin_config(config))


def test_denylist_entries_are_split_and_normalised() -> None:
    config = registry_pb2.PluginConfig()
    config.web_search.domain_denylist.extend(["Spam.example, *.ads.example.", "bad.org"])
    assert tools_config_from_plugin_config(config).web_search.domain_denylist == {
        "spam.example",
        "ads.example",
        "bad.org",
    }


def test_html_pages_lose_scripts_and_keep_title_and_text() -> None:
    title, text = page_text(
        "<html><head><title> The  Title </title><script>evil()</script></head>"
        "<body><nav>menu</nav><p>First &amp; para</p><p>Second</p></body></html>",
        "text/html",
    )
    assert title == "The Title"
    assert "evil" not in text and "menu" not in text
    assert text.split("\n\n") == ["First & para", "Second"]
