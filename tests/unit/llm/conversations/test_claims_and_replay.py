"""The claim rules of ClaimPost and FinishClaim, and the state an Attach replays, as pure functions."""

from __future__ import annotations

import pytest

from services.common.errors import AlreadyExists, ErrorClass
from services.llm.conversations.claims import decide
from services.llm.conversations.claimstore import ClaimRow
from services.llm.conversations.model import ApprovalRequired, Control, Finish, Finished, ToolStatus, ToolUpdate
from services.llm.conversations.replay import TurnSnapshot, for_viewer
from services.llm.providers.base import Annotation, StreamError, TextDelta, ToolCall

NOW = 1_000_000


def row(claimant: str = "a", *, lease_until: int = NOW + 10_000, finished: bool = False) -> ClaimRow:
    return ClaimRow("p", "", claimant, lease_until, finished)


def test_the_same_claimant_renews_without_taking_over() -> None:
    assert decide(row("a"), "a", NOW) is False


def test_another_claimant_is_refused_while_the_lease_runs() -> None:
    with pytest.raises(AlreadyExists):
        decide(row("a"), "b", NOW)


def test_another_claimant_takes_over_once_the_lease_expired() -> None:
    assert decide(row("a", lease_until=NOW - 1), "b", NOW) is True


def test_a_finished_claim_is_refused_even_after_its_lease() -> None:
    with pytest.raises(AlreadyExists):
        decide(row("a", lease_until=NOW - 1, finished=True), "b", NOW)
    with pytest.raises(AlreadyExists):
        decide(row("a", finished=True), "a", NOW)


def test_finishing_twice_by_the_holder_is_harmless() -> None:
    assert decide(row("a", finished=True), "a", NOW, finishing=True) is False


def test_the_replay_is_the_text_so_far_as_one_delta_with_annotations_and_tools() -> None:
    snapshot = TurnSnapshot()
    call = ToolCall("c1", "web_search", '{"query": "x"}', {"query": "x"})
    for event in (
        Control("start"),
        TextDelta("thrown "),
        Control("continue"),  # a resumed turn rewrites the post
        TextDelta("Hello "),
        TextDelta("world"),
        ToolUpdate(call, ToolStatus.SUCCESS, "results"),
        Annotation("https://example.com", "Example"),
    ):
        snapshot.apply(event)
    assert snapshot.replay() == [
        Control("start"),
        TextDelta("Hello world"),
        Annotation("https://example.com", "Example"),
        ToolUpdate(call, ToolStatus.SUCCESS, "results"),
    ]
    snapshot.apply(StreamError(ErrorClass.PROVIDER, "boom"))
    snapshot.apply(Finished(Finish.ERROR))
    assert snapshot.replay()[-2:] == [StreamError(ErrorClass.PROVIDER, "boom"), Finished(Finish.ERROR)]


def test_unshared_tool_arguments_and_results_are_redacted_for_other_viewers() -> None:
    call = ToolCall("c1", "read_channel", '{"channel_id": "x"}', {"channel_id": "x"})
    update = ToolUpdate(call, ToolStatus.SUCCESS, "secret posts", shared=False)
    redacted = for_viewer(update, requester=False)
    assert isinstance(redacted, ToolUpdate)
    assert redacted.result == "" and redacted.call.raw_arguments == "" and redacted.call.name == "read_channel"
    assert for_viewer(update, requester=True) is update
    pending = for_viewer(ApprovalRequired((update,)), requester=False)
    assert isinstance(pending, ApprovalRequired) and pending.calls[0].result == ""
