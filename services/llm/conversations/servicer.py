"""agents.llm.v1.Conversations: thin translation between messages and the conversation loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from agents.common.v1 import common_pb2 as common_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.llm.conversations import conversation_proto
from services.llm.conversations.analysis import Analyses
from services.llm.conversations.answers import PostAnswers
from services.llm.conversations.attach import Attachments, RemoteRunner
from services.llm.conversations.claims import PostClaimLeases
from services.llm.conversations.composition import ConversationComposition
from services.llm.conversations.model import Bound, TurnEvent
from services.llm.conversations.reads import ConversationReader
from services.llm.conversations.relay import AttachRelay
from services.llm.conversations.runs import TurnRuns
from services.llm.conversations.turns import caller_id

# The response messages of the streaming RPCs, each wrapping one ConversationEvent.
_R = TypeVar(
    "_R",
    llm_pb2.RespondResponse,
    llm_pb2.AnalyzeResponse,
    llm_pb2.SummarizeResponse,
    llm_pb2.RegenerateResponse,
    llm_pb2.ToolDecisionResponse,
    llm_pb2.ToolResultShareResponse,
    llm_pb2.AnswerQuestionResponse,
    llm_pb2.AttachResponse,
)


async def _events(events: AsyncIterator[TurnEvent], post_id: str, wrap: type[_R]) -> AsyncIterator[_R]:
    """Loop events as the RPC's own response message (each wraps one ConversationEvent)."""
    conversation_id = ""
    async for event in events:
        if isinstance(event, Bound):
            conversation_id = event.conversation_id
            continue
        yield wrap(event=conversation_proto.event_message(event, conversation_id, post_id))


class ConversationsServicer(llm_pb2_grpc.ConversationsServicer):
    """Streaming calls prepare in the RPC, then their turn runs detached (``TurnRuns``): a caller
    that goes away does not end the turn, and ``Attach`` picks it up again."""

    def __init__(
        self,
        answers: PostAnswers,
        analyses: Analyses,
        reader: ConversationReader,
        runs: TurnRuns,
        claims: PostClaimLeases,
        attachments: Attachments,
        relay: AttachRelay,
        composition: ConversationComposition,
    ) -> None:
        self.answers = answers
        self.analyses = analyses
        self.reader = reader
        self.runs = runs
        self.claims = claims
        self.attachments = attachments
        self.relay = relay
        self.composition = composition

    def _detached(
        self, turn: AsyncIterator[TurnEvent], post_id: str, requester_id: str, wrap: type[_R]
    ) -> AsyncIterator[_R]:
        return _events(self.runs.detach(turn, post_id, requester_id), post_id, wrap)

    async def Respond(
        self,
        request: llm_pb2.RespondRequest,
        context: grpc.aio.ServicerContext[llm_pb2.RespondRequest, llm_pb2.RespondResponse],
    ) -> AsyncIterator[llm_pb2.RespondResponse]:
        """Answer a user's post, streaming events until the turn ends or pauses."""
        turn = self.answers.respond(conversation_proto.respond_input(request))
        async for event in self._detached(
            turn, request.response_post_id, request.context.user_id, llm_pb2.RespondResponse
        ):
            yield event

    async def Analyze(
        self,
        request: llm_pb2.AnalyzeRequest,
        context: grpc.aio.ServicerContext[llm_pb2.AnalyzeRequest, llm_pb2.AnalyzeResponse],
    ) -> AsyncIterator[llm_pb2.AnalyzeResponse]:
        """Thread analysis into a new DM post."""
        turn = self.analyses.analyze(conversation_proto.analyze_input(request))
        async for event in self._detached(
            turn, request.response_post_id, request.context.user_id, llm_pb2.AnalyzeResponse
        ):
            yield event

    async def Summarize(
        self,
        request: llm_pb2.SummarizeRequest,
        context: grpc.aio.ServicerContext[llm_pb2.SummarizeRequest, llm_pb2.SummarizeResponse],
    ) -> AsyncIterator[llm_pb2.SummarizeResponse]:
        """Channel summary over a time range into a new DM post."""
        turn = self.analyses.summarize(conversation_proto.summarize_input(request))
        async for event in self._detached(
            turn, request.response_post_id, request.context.user_id, llm_pb2.SummarizeResponse
        ):
            yield event

    async def Stop(
        self, request: llm_pb2.StopRequest, context: grpc.aio.ServicerContext[llm_pb2.StopRequest, llm_pb2.StopResponse]
    ) -> llm_pb2.StopResponse:
        """Stop the stream writing into a post, on any replica."""
        await self.answers.stop(request.post_id)
        return llm_pb2.StopResponse()

    async def Regenerate(
        self,
        request: llm_pb2.RegenerateRequest,
        context: grpc.aio.ServicerContext[llm_pb2.RegenerateRequest, llm_pb2.RegenerateResponse],
    ) -> AsyncIterator[llm_pb2.RegenerateResponse]:
        """Re-run the turn that produced a post onto the same post."""
        ctx = conversation_proto.context_from(request.context)
        turn = self.answers.regenerate(request.post_id, ctx)
        async for event in self._detached(turn, request.post_id, caller_id(ctx), llm_pb2.RegenerateResponse):
            yield event

    async def ToolDecision(
        self,
        request: llm_pb2.ToolDecisionRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ToolDecisionRequest, llm_pb2.ToolDecisionResponse],
    ) -> AsyncIterator[llm_pb2.ToolDecisionResponse]:
        """Accept or reject pending tool calls, then resume the turn."""
        requester = caller_id(conversation_proto.context_from(request.context))
        turn = self.answers.tool_decision(request.post_id, list(request.accepted_tool_ids))
        async for event in self._detached(turn, request.post_id, requester, llm_pb2.ToolDecisionResponse):
            yield event

    async def ToolResultShare(
        self,
        request: llm_pb2.ToolResultShareRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ToolResultShareRequest, llm_pb2.ToolResultShareResponse],
    ) -> AsyncIterator[llm_pb2.ToolResultShareResponse]:
        """Share chosen tool results into the channel, then run the follow-up round."""
        requester = caller_id(conversation_proto.context_from(request.context))
        turn = self.answers.share_results(request.post_id, list(request.accepted_tool_ids))
        async for event in self._detached(turn, request.post_id, requester, llm_pb2.ToolResultShareResponse):
            yield event

    async def AnswerQuestion(
        self,
        request: llm_pb2.AnswerQuestionRequest,
        context: grpc.aio.ServicerContext[llm_pb2.AnswerQuestionRequest, llm_pb2.AnswerQuestionResponse],
    ) -> AsyncIterator[llm_pb2.AnswerQuestionResponse]:
        """Answer the paused turn's question, then resume the turn."""
        requester = caller_id(conversation_proto.context_from(request.context))
        turn = self.answers.answer_question(request.post_id, request.tool_call_id, request.answer)
        async for event in self._detached(turn, request.post_id, requester, llm_pb2.AnswerQuestionResponse):
            yield event

    async def GetConversation(
        self,
        request: llm_pb2.GetConversationRequest,
        context: grpc.aio.ServicerContext[llm_pb2.GetConversationRequest, llm_pb2.GetConversationResponse],
    ) -> llm_pb2.GetConversationResponse:
        """One conversation with its turns (filtered for non-owners)."""
        conversation, turns = await self.reader.get(request.id)
        return llm_pb2.GetConversationResponse(
            conversation=conversation_proto.conversation_message(conversation, turns)
        )

    async def GetConversationContext(
        self,
        request: llm_pb2.GetConversationContextRequest,
        context: grpc.aio.ServicerContext[
            llm_pb2.GetConversationContextRequest, llm_pb2.GetConversationContextResponse
        ],
    ) -> llm_pb2.GetConversationContextResponse:
        """How the tokens of the conversation's next request divide between its sources."""
        found = await self.composition.compose(request.id)
        return llm_pb2.GetConversationContextResponse(
            components=[
                llm_pb2.ContextComponent(source=c.source, tokens=c.tokens, proportion=c.proportion)
                for c in found.components
            ],
            total=found.total,
            total_source=found.total_source,
            input_token_limit=found.input_token_limit,
            model=found.model,
        )

    async def ListConversations(
        self,
        request: llm_pb2.ListConversationsRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ListConversationsRequest, llm_pb2.ListConversationsResponse],
    ) -> llm_pb2.ListConversationsResponse:
        """The caller's conversations, newest first."""
        items, next_token = await self.reader.list(request.page.page_size, request.page.page_token)
        return llm_pb2.ListConversationsResponse(
            conversations=[conversation_proto.conversation_message(c) for c in items],
            page=common_pb2.PageResponse(next_page_token=next_token),
        )

    async def ClaimPost(
        self,
        request: llm_pb2.ClaimPostRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ClaimPostRequest, llm_pb2.ClaimPostResponse],
    ) -> llm_pb2.ClaimPostResponse:
        """Claim a user's post for answering, or take over its expired claim."""
        grant = await self.claims.claim(request.post_id, request.claimant, request.lease_seconds)
        return llm_pb2.ClaimPostResponse(
            post_id=grant.post_id, response_post_id=grant.response_post_id, taken_over=grant.taken_over
        )

    async def RenewClaim(
        self,
        request: llm_pb2.RenewClaimRequest,
        context: grpc.aio.ServicerContext[llm_pb2.RenewClaimRequest, llm_pb2.RenewClaimResponse],
    ) -> llm_pb2.RenewClaimResponse:
        """Extend the caller's lease, recording the reply post once it exists."""
        grant = await self.claims.renew(
            request.post_id, request.claimant, request.lease_seconds, request.response_post_id
        )
        return llm_pb2.RenewClaimResponse(response_post_id=grant.response_post_id)

    async def RenewClaims(
        self,
        request: llm_pb2.RenewClaimsRequest,
        context: grpc.aio.ServicerContext[llm_pb2.RenewClaimsRequest, llm_pb2.RenewClaimsResponse],
    ) -> llm_pb2.RenewClaimsResponse:
        """Extend the caller's leases on many posts in one statement."""
        lost = await self.claims.renew_many(list(request.post_ids), request.claimant, request.lease_seconds)
        return llm_pb2.RenewClaimsResponse(lost_post_ids=lost)

    async def FinishClaim(
        self,
        request: llm_pb2.FinishClaimRequest,
        context: grpc.aio.ServicerContext[llm_pb2.FinishClaimRequest, llm_pb2.FinishClaimResponse],
    ) -> llm_pb2.FinishClaimResponse:
        """Mark the post answered."""
        await self.claims.finish(request.post_id, request.claimant)
        return llm_pb2.FinishClaimResponse()

    async def ReleaseClaim(
        self,
        request: llm_pb2.ReleaseClaimRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ReleaseClaimRequest, llm_pb2.ReleaseClaimResponse],
    ) -> llm_pb2.ReleaseClaimResponse:
        """Hand the caller's claim back for the next sweep."""
        await self.claims.release(request.post_id, request.claimant)
        return llm_pb2.ReleaseClaimResponse()

    async def TakeOverExpiredClaim(
        self,
        request: llm_pb2.TakeOverExpiredClaimRequest,
        context: grpc.aio.ServicerContext[llm_pb2.TakeOverExpiredClaimRequest, llm_pb2.TakeOverExpiredClaimResponse],
    ) -> llm_pb2.TakeOverExpiredClaimResponse:
        """Take over any one expired, unfinished claim."""
        grant = await self.claims.take_over_expired(request.claimant, request.lease_seconds)
        return llm_pb2.TakeOverExpiredClaimResponse(post_id=grant.post_id, response_post_id=grant.response_post_id)

    async def Attach(
        self,
        request: llm_pb2.AttachRequest,
        context: grpc.aio.ServicerContext[llm_pb2.AttachRequest, llm_pb2.AttachResponse],
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
