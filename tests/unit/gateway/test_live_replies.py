"""A viewer following a reply this replica renders: the replay, then live payloads, until it ends."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.gateway.rendering.live import LiveReplies
from services.gateway.rendering.reply import ReplyState


def text(t: str) -> llm_pb2.ConversationEvent:
    return llm_pb2.ConversationEvent(stream=llm_pb2.StreamEvent(text_delta=llm_pb2.TextDelta(text=t)))


async def test_a_follower_gets_the_text_so_far_then_live_payloads_until_the_reply_ends() -> None:
    replies = LiveReplies()
    live = replies.open(ReplyState(post_id="r1", requester_id="alice"))
    live.publish(live.state.apply(text("Hel")))
    payloads = replies.follow(live, "alice")

    assert await anext(payloads) == {"post_id": "r1", "control": "start"}
    assert await anext(payloads) == {"post_id": "r1", "next": "Hel"}
    live.publish(live.state.apply(text("lo")))
    assert await anext(payloads) == {"post_id": "r1", "next": "Hello"}
    replies.end("r1")
    assert await anext(payloads, None) is None
    assert replies.get("r1") is None
