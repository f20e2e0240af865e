"""The legacy config.bots transform."""

from __future__ import annotations

from services.index.registry.legacy_bots import split_legacy_bots


def test_embedded_services_move_to_services_and_identical_ones_are_shared() -> None:
    embedded = {"name": "Old", "type": "mistral", "apiKey": "m"}
    config = {
        "services": [{"id": "s1", "name": "OpenAI", "type": "openai", "apiKey": "k"}],
        "bots": [
            {"name": "one", "displayName": "One", "service": embedded},
            {"name": "two", "service": dict(embedded)},
            {"name": "three", "serviceID": "s1", "userAccessLevel": 1, "userIDs": ["u"]},
        ],
    }
    document, agents = split_legacy_bots(config)
    assert "bots" not in document
    assert len(document["services"]) == 2
    moved = document["services"][1]["id"]
    assert [a.service_id for a in agents] == [moved, moved, "s1"]
    assert [a.creator_id for a in agents] == ["", "", ""]
    assert agents[2].user_ids == ("u",) and int(agents[2].user_access_level) == 1
    assert agents[0].mcp_dynamic_tool_loading is True


def test_a_document_without_bots_is_unchanged_apart_from_the_key() -> None:
    document, agents = split_legacy_bots({"services": [], "defaultBotName": "x"})
    assert agents == [] and document == {"services": [], "defaultBotName": "x"}
