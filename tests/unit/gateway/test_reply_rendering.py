"""Event sequences folded into reply posts and postupdate payloads."""

from __future__ import annotations

import json

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.gateway.rendering.reply import ERROR_LEAD, ERROR_TEXT, HANDOFF_TEXT, ReplyState, answer_text, base_props


def text(t: str) -> llm_pb2.ConversationEvent:
    return llm_pb2.ConversationEvent(stream=llm_pb2.StreamEvent(text_delta=llm_pb2.TextDelta(text=t)))


def done(reason: int = llm_pb2.STOP_REASON_END_TURN) -> llm_pb2.ConversationEvent:
    return llm_pb2.ConversationEvent(stream=llm_pb2.StreamEvent(done=llm_pb2.Done(stop_reason=reason)))


def new_state() -> ReplyState:
    props = base_props(conversation_id="", responding_to="p1", requester_id="alice", allow_unsafe_links=False)
    return ReplyState(post_id="r1", requester_id="alice", props=props)


def test_text_deltas_accumulate_into_next_payloads_and_the_final_props() -> None:
    state = new_state()
    state.apply(llm_pb2.ConversationEvent(conversation_id="c1", control="start"))
    assert state.apply(text("Hel"))[0].payload == {"post_id": "r1", "next": "Hel"}
    assert state.apply(text("lo"))[0].payload == {"post_id": "r1", "next": "Hello"}
    assert state.apply(done())[-1].payload == {"post_id": "r1", "control": "end"}
    props = state.post_props()
    assert state.message() == "Hello"
    assert props["conversation_id"] == "c1" and props["responding_to"] == "p1"
    assert props["llm_requester_user_id"] == "alice" and props["unsafe_links"] == "true"
    assert props["agents_stream_status"] == "done"


def test_a_failed_stream_keeps_the_text_and_appends_the_plugin_error_and_its_reason_after_a_blank_line() -> None:
    state = new_state()
    state.apply(text("partial"))
    error = llm_pb2.StreamEvent(error=llm_pb2.StreamError(message="provider down"))
    state.apply(llm_pb2.ConversationEvent(stream=error))
    state.apply(done(llm_pb2.STOP_REASON_ERROR))
    assert state.message() == f"partial\n\n{ERROR_LEAD}: provider down"
    assert state.post_props()["agents_stream_status"] == "interrupted"


def test_a_stream_that_ends_in_error_without_a_reason_gets_the_plugin_error() -> None:
    state = new_state()
    state.apply(done(llm_pb2.STOP_REASON_ERROR))
    assert state.message() == ERROR_TEXT


def test_a_stopped_stream_keeps_the_text_and_says_it_was_stopped() -> None:
    state = new_state()
    state.apply(text("half an answer"))
    updates = state.apply(done(llm_pb2.STOP_REASON_STOPPED))
    assert updates[-1].payload["control"] == "cancel"
    assert state.message() == "half an answer"
    assert state.post_props()["agents_stream_status"] == "stopped"


def test_tool_call_payloads_are_redacted_for_everyone_but_the_requester() -> None:
    state = new_state()
    call = llm_pb2.ToolCall(id="t1", name="search", raw_arguments='{"q": "secret"}')
    required = llm_pb2.ToolApprovalRequired(calls=[llm_pb2.ToolCallState(call=call, status="pending")], stage="call")
    [update] = state.apply(llm_pb2.ConversationEvent(approval_required=required))
    mine = json.loads(update.for_user("alice", "alice")["tool_call"])
    theirs = json.loads(update.for_user("bob", "alice")["tool_call"])
    assert mine[0]["arguments"] == '{"q": "secret"}' and mine[0]["status"] == "pending"
    assert theirs[0]["arguments"] == {} and theirs[0]["name"] == "search"
    state.apply(done(llm_pb2.STOP_REASON_AWAITING_APPROVAL))
    assert state.post_props()["agents_stream_status"] == "awaiting_approval"
    assert "secret" not in json.dumps(state.post_props())


def test_an_empty_answer_shows_the_plugin_no_result_text() -> None:
    state = new_state()
    state.apply(done())
    assert state.message() == "Sorry! The LLM did not return a result."


def test_continue_after_approval_starts_the_visible_text_over() -> None:
    state = new_state()
    state.apply(text("before"))
    state.apply(llm_pb2.ConversationEvent(control="continue"))
    state.apply(text("after"))
    assert state.message() == "after"


def test_allowing_unsafe_links_leaves_the_prop_out() -> None:
    props = base_props(conversation_id="c", responding_to="p", requester_id="u", allow_unsafe_links=True)
    assert "unsafe_links" not in props


def test_a_handed_off_reply_keeps_its_text_with_a_note_the_replica_taking_over_drops() -> None:
    state = new_state()
    state.apply(text("half an answer"))
    state.hand_off()
    assert not state.finished and state.post_props()["agents_stream_status"] == "handed_off"
    assert state.message() == f"half an answer\n\n{HANDOFF_TEXT}"
    assert answer_text(state.message()) == "half an answer"
    assert answer_text(HANDOFF_TEXT) == "" and answer_text("an answer\n\n") == "an answer\n\n"
