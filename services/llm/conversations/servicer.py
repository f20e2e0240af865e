"""agents.llm.v1.Conversations: thin translation between messages and the conversation loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.llm.conversations import messages
from services.llm.conversations.analysis import Analyses
from services.llm.conversations.attach import Attachments, RemoteRunner
from services.llm.conversations.claims import ClaimRequest, PostClaims
from services.llm.conversations.model import Bound, TurnEvent
from services.llm.conversations.reads import ConversationReader
from services.llm.conversations.relay import AttachRelay
from services.llm.conversations.responses import Responses
from services.llm.conversations.runs import TurnRuns
from services.llm.conversations.runtime import caller_id

_R = TypeVar("_R")


async def _events(events: AsyncIterator[TurnEvent], post_id: str, wrap: type[_R]) -> AsyncIterator[_R]:
    """Loop events as the RPC's own response message (each wraps one ConversationEvent)."""
    conversation_id = ""
    async for event in events:
        if isinstance(event, Bound):
            conversation_id = event.conversation_id
            continue
        yield wrap(event=messages.event_message(event, conversation_id, post_id))


class ConversationsServicer(llm_pb2_grpc.ConversationsServicer):
    """Streaming calls prepare in the RPC, then their turn runs detached (``TurnRuns``): a caller
    that goes away does not end the turn, and ``Attach`` picks it up again."""

    def __init__(
        self,
        responses: Responses,
        analyses: Analyses,
        reader: ConversationReader,
        runs: TurnRuns,
        claims: PostClaims,
        attachments: Attachments,
        relay: AttachRelay,
    ) -> None:
        self.responses = responses
        self.analyses = analyses
        self.reader = reader
        self.runs = runs
        self.claims = claims
        self.attachments = attachments
        self.relay = relay

    async def Respond(
        self, request: llm_pb2.RespondRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.RespondResponse]:
        """Answer a user's post, streaming events until the turn ends or pauses."""
        post_id = request.response_post_id
        source = self.runs.detach(
            self.responses.respond(messages.respond_input(request)), post_id, request.context.user_id
        )
        async for event in _events(source, post_id, llm_pb2.RespondResponse):
            yield event

    async def Analyze(
        self, request: llm_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.AnalyzeResponse]:
        """Thread analysis into a new DM post."""
        post_id = request.response_post_id
        source = self.runs.detach(
            self.analyses.analyze(messages.analyze_input(request)), post_id, request.context.user_id
        )
        async for event in _events(source, post_id, llm_pb2.AnalyzeResponse):
            yield event

    async def Summarize(
        self, request: llm_pb2.SummarizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.SummarizeResponse]:
        """Channel summary over a time range into a new DM post."""
        post_id = request.response_post_id
        source = self.runs.detach(
            self.analyses.summarize(messages.summarize_input(request)), post_id, request.context.user_id
        )
        async for event in _events(source, post_id, llm_pb2.SummarizeResponse):
            yield event

    async def Stop(self, request: llm_pb2.StopRequest, context: grpc.aio.ServicerContext) -> llm_pb2.StopResponse:
        """Stop the stream writing into a post, on any replica."""
        await self.responses.stop(request.post_id)
        return llm_pb2.StopResponse()

    async def Regenerate(
        self, request: llm_pb2.RegenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.RegenerateResponse]:
        """Re-run the turn that produced a post onto the same post."""
        ctx = messages.context_from(request.context)
        source = self.runs.detach(self.responses.regenerate(request.post_id, ctx), request.post_id, caller_id(ctx))
        async for event in _events(source, request.post_id, llm_pb2.RegenerateResponse):
            yield event

    async def ToolDecision(
        self, request: llm_pb2.ToolDecisionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ToolDecisionResponse]:
        """Accept or reject pending tool calls, then resume the turn."""
        requester = caller_id(messages.context_from(request.context))
        decided = self.responses.tool_decision(request.post_id, list(request.accepted_tool_ids))
        source = self.runs.detach(decided, request.post_id, requester)
        async for event in _events(source, request.post_id, llm_pb2.ToolDecisionResponse):
            yield event

    async def ToolResultShare(
        self, request: llm_pb2.ToolResultShareRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ToolResultShareResponse]:
        """Share chosen tool results into the channel, then run the follow-up round."""
        requester = caller_id(messages.context_from(request.context))
        shared = self.responses.share_results(request.post_id, list(request.accepted_tool_ids))
        source = self.runs.detach(shared, request.post_id, requester)
        async for event in _events(source, request.post_id, llm_pb2.ToolResultShareResponse):
            yield event

    async def GetConversation(
        self, request: llm_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.GetConversationResponse:
        """One conversation with its turns (filtered for non-owners)."""
        conversation, turns = await self.reader.get(request.id)
        return llm_pb2.GetConversationResponse(conversation=messages.conversation_message(conversation, turns))

    async def ListConversations(
        self, request: llm_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ListConversationsResponse:
        """The caller's conversations, newest first."""
        items, next_token = await self.reader.list(request.page.page_size, request.page.page_token)
        return llm_pb2.ListConversationsResponse(
            conversations=[messages.conversation_message(c) for c in items],
            page={"next_page_token": next_token},
        )

    async def ClaimPost(
        self, request: llm_pb2.ClaimPostRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ClaimPostResponse:
        """Claim, renew, finish, or (post_id "") take over an expired claim on a user's post."""
        grant = await self.claims.claim(
            ClaimRequest(
                post_id=request.post_id,
                claimant=request.claimant,
                lease_seconds=request.lease_seconds,
                response_post_id=request.response_post_id,
                finished=request.finished,
            )
        )
        return llm_pb2.ClaimPostResponse(
            post_id=grant.post_id, response_post_id=grant.response_post_id, taken_over=grant.taken_over
        )

    async def Attach(
        self, request: llm_pb2.AttachRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.AttachResponse]:
        """The turn writing into a post: its state so far, then its live events."""
        target = await self.attachments.locate(request.post_id)
        if isinstance(target, RemoteRunner):
            async for response in self.relay.attach(target.address, request.post_id):
                yield response
            return
        source = self.attachments.follow(target, caller_id())
        async for event in _events(source, request.post_id, llm_pb2.AttachResponse):
            yield event
