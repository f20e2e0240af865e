"""Answers one trigger: claim the post, create the reply, stream the turn into it.

Also resumes replies a dead replica left (the claim taken over by a sweep: ``Attach`` to the turn
and finish the same post) and posts the mention reminder for thread replies that forgot the
@mention.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from services.common import attributes
from services.common.errors import AlreadyExists, DomainError, NotFound, UpstreamUnavailable
from services.common.grpc_client import unary
from services.common.identity import Identity, current_identity
from services.common.mattermost import Post
from services.common.telemetry import tracer
from services.gateway.agent_directory import AgentBot
from services.gateway.backends import conversation_events
from services.gateway.conversations.claims import ReplicaClaims
from services.gateway.conversations.triggers import ReminderCandidate, Trigger
from services.gateway.deps import GatewayDeps
from services.gateway.rendering.reply import (
    FINAL_STATUSES,
    INTERRUPTED,
    POST_TYPE,
    PROP_RESPONDING_TO,
    PROP_STREAM_STATUS,
    UNAVAILABLE_TEXT,
)
from services.gateway.replies import Reply

logger = logging.getLogger(__name__)

T = TypeVar("T")

REMINDER_TYPE = "custom_agent_mention_reminder"
REMINDER_TEXT = "To respond to an agent you must @mention them"
# Longest wait between two tries of a post whose answer could not start.
RETRY_MAX_WAIT_SECONDS = 5.0


@contextlib.contextmanager
def acting_for(user_id: str) -> Iterator[None]:
    """Within the block, gRPC calls carry ``user_id`` as the caller."""
    token = current_identity.set(Identity(user_id=user_id, internal=True))
    try:
        yield None
    finally:
        current_identity.reset(token)


class Responder:
    """Turns triggers into reply posts on behalf of the agents' bots."""

    def __init__(self, deps: GatewayDeps, claims: ReplicaClaims) -> None:
        self.deps = deps
        self.replies = deps.replies
        self.claims = claims

    async def context(self, trigger: Trigger) -> llm_pb2.ConversationContext:
        """Where and for whom the turn runs."""
        user = await self.deps.mattermost.get_user(trigger.post.user_id)
        return llm_pb2.ConversationContext(
            user_id=user.id,
            agent_id=trigger.agent.agent_id,
            channel_id=trigger.post.channel_id,
            team_id=trigger.team_id,
            is_direct_message=trigger.is_direct_message,
            user_team_ids=await self.deps.team_ids_of(user.id),
            user_timezone=user.preferred_timezone,
        )

    async def _start(self, trigger: Trigger) -> llm_pb2.ConversationContext | None:
        """Check the agent may answer the claimed post here: the turn's context, or None when
        the agent is not usable here."""
        post, agent = trigger.post, trigger.agent
        context = await self.context(trigger)
        # Checked here although Respond checks again: a post the agent may not answer gets no
        # reply post at all, rather than one that shows the refusal.
        with acting_for(post.user_id):
            decision = await unary(
                self.deps.backends.registry.CheckAgentAccess,
                registry_pb2.CheckAgentAccessRequest(
                    agent_id=agent.agent_id,
                    user_id=post.user_id,
                    channel_id=post.channel_id,
                    is_direct_message=trigger.is_direct_message,
                    user_team_ids=list(context.user_team_ids),
                ),
            )
        if not decision.allowed:
            logger.info("agent not usable here; not answering", extra={"post_id": post.id, "reason": decision.reason})
            return None
        return context

    async def _retrying(self, post_id: str, step: Callable[..., Awaitable[T]], *args: object) -> T:
        """``step(*args)``, tried again with backoff while a dependency is unavailable, for at most
        ``answer_retry_seconds``; then its UpstreamUnavailable is raised."""

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "a dependency is unavailable; trying the answer again",
                extra={
                    "post_id": post_id,
                    "attempt": state.attempt_number,
                    "retry_in": state.next_action.sleep if state.next_action else 0.0,
                    "error": error.message if isinstance(error, DomainError) else "",
                },
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(UpstreamUnavailable),
            wait=wait_exponential(multiplier=0.5, max=RETRY_MAX_WAIT_SECONDS),
            stop=stop_after_delay(self.deps.settings.answer_retry_seconds),
            before_sleep=log_retry,
            reraise=True,
        )
        # A coroutine function, not a lambda: tenacity awaits only what it sees is async.
        return await retrying(step, *args)

    async def _unavailable_reply(self, trigger: Trigger, err: UpstreamUnavailable) -> None:
        """Tell the post's author it could not be answered, rather than dropping it silently."""
        post = trigger.post
        logger.error(
            "a dependency stayed unavailable; replying with an error",
            extra={"post_id": post.id, "error": err.message},
        )
        poster = await self.replies.poster(trigger.agent.bot_user_id)
        props = self.replies.props(requester_id=post.user_id, responding_to=post.id)
        props[PROP_STREAM_STATUS] = INTERRUPTED
        await poster.create_post(
            post.channel_id, UNAVAILABLE_TEXT, root_id=post.root_id or post.id, props=props, type=POST_TYPE
        )

    async def answer(self, trigger: Trigger, *, already_claimed: bool = False) -> None:
        """Answer a user's post into a new reply post, unless another replica claimed it; the
        turn's trace starts here (the plugin's "process user request"), also for a post event."""
        post = trigger.post
        span_attributes = {
            attributes.USER_ID: post.user_id,
            attributes.CHANNEL_ID: post.channel_id,
            attributes.POST_ID: post.id,
            attributes.THREAD_ROOT_POST_ID: post.root_id or post.id,
            attributes.AGENT_NAME: trigger.agent.username,
        }
        with tracer(__name__).start_as_current_span("process user request", attributes=span_attributes):
            await self._answer(trigger, already_claimed)

    async def _answer(self, trigger: Trigger, already_claimed: bool) -> None:
        post = trigger.post
        with self.claims.answering(post.id):
            try:
                grant = None if already_claimed else await self._retrying(post.id, self.claims.claim, post.id)
            except UpstreamUnavailable as err:
                await self._unavailable_reply(trigger, err)
                # Answered (with the error): no replica takes the post up once the dependency is back.
                await self.claims.finish(post.id)
                return
            if not already_claimed:
                if grant is None:
                    return  # another replica has it, or it is answered
                if grant.response_post_id and await self._finish_reply(post.id, grant.response_post_id):
                    # Taken over from a replica that died (or fell behind) after it started the
                    # reply: that reply is finished, not a second one started.
                    return
            # A grant naming a reply no turn wrote into is a takeover too: that reply is answered into.
            taken_over = already_claimed or (grant is not None and (grant.taken_over or bool(grant.response_post_id)))
            # Renewed from the claim until the reply is final: checking access, creating the reply
            # post and starting the turn can outlast a lease on a busy cluster, and an expired claim
            # would be answered a second time by a sweep.
            async with self.claims.held(post.id):
                answered = await self._answer_claimed(trigger, taken_over)
        if answered:
            await self.claims.finish(post.id)

    async def _answer_claimed(self, trigger: Trigger, taken_over: bool) -> bool:
        """Answer the claimed post; False when a turn already answers it (nothing to finish)."""
        try:
            context = await self._retrying(trigger.post.id, self._start, trigger)
        except UpstreamUnavailable as err:
            await self._unavailable_reply(trigger, err)
            return True
        if context is None:
            return True  # the agent may not answer here: no reply, and no replica tries again
        return await self._respond(trigger, context, taken_over)

    async def _respond(self, trigger: Trigger, context: llm_pb2.ConversationContext, taken_over: bool) -> bool:
        """Create the reply post (or, ``taken_over`` from a replica that recorded none, take the
        one it left) and stream the turn into it; False when a turn already answers the post
        (its reply post is another one)."""
        post, agent = trigger.post, trigger.agent
        reply = await self._reply_left(post, agent.bot_user_id) if taken_over else None
        if reply is None:
            reply = await self.replies.start_in_thread(post, agent.bot_user_id)
        try:
            await self.claims.record_reply(post.id, reply.post_id)
        except DomainError as err:
            # The turn goes on (and says so in the post if it cannot start); raising here would
            # leave the new post streaming with nothing rendering it.
            logger.warning(
                "recording the reply post on the claim failed", extra={"post_id": post.id, "error": err.message}
            )
        request = llm_pb2.RespondRequest(
            context=context,
            post_id=post.id,
            root_post_id=post.root_id,
            message=post.message,
            file_ids=list(post.file_ids),
            response_post_id=reply.post_id,
            automated_invoker=trigger.automated_invoker,
        )
        with acting_for(post.user_id):
            events = conversation_events(
                self.deps.backends.conversations.Respond,
                request,
                timeout=self.deps.settings.turn_timeout_seconds,
                wait_for_ready=True,
            )
            first = await _first(events)
            if isinstance(first, AlreadyExists):
                # A turn already answers the post: a replica that fell behind lost the claim to
                # this one and started its turn, or took this one's reply over (``_reply_left``)
                # and started the turn in it. Whoever holds the claim renders that turn; this
                # reply is deleted only when the turn writes elsewhere.
                if reply.new and not await self._a_turn_writes_into(reply):
                    await reply.poster.delete_post(reply.post_id)
                return False
            with tracer(__name__).start_as_current_span(
                "stream to post", attributes={attributes.POST_ID: reply.post_id}
            ):
                await self.replies.write(reply, _prepend(first, events), resumable=True)
        return True

    async def _a_turn_writes_into(self, reply: Reply) -> bool:
        """Whether a turn writes or wrote into ``reply`` (one ``Attach`` call, closed after its
        first event): only NOT_FOUND says none ever did; a reply is never deleted on a doubt."""
        async with contextlib.aclosing(self._attach(reply.post_id)) as events:
            first = await _first(events)
        return not isinstance(first, NotFound)

    def _attach(self, reply_id: str) -> AsyncGenerator[llm_pb2.ConversationEvent, None]:
        """The events of the turn writing into ``reply_id``, from what it shows so far (``Attach``)."""
        return conversation_events(
            self.deps.backends.conversations.Attach,
            llm_pb2.AttachRequest(post_id=reply_id),
            timeout=self.deps.settings.turn_timeout_seconds,
            wait_for_ready=True,
        )

    async def _reply_left(self, post: Post, bot_user_id: str) -> Reply | None:
        """The unfinished reply to ``post`` a previous claimant created but never recorded on the
        claim (it died creating it, or its record failed) and started no turn for: answered
        into rather than left streaming beside a second one."""
        for candidate in await self.deps.mattermost.get_post_thread(post.id):
            if (
                candidate.user_id == bot_user_id
                and candidate.props.get(PROP_RESPONDING_TO) == post.id
                and candidate.props.get(PROP_STREAM_STATUS) not in FINAL_STATUSES
            ):
                return await self.replies.of_post(candidate)
        return None

    async def resume(
        self,
        claim: llm_pb2.TakeOverExpiredClaimResponse,
        trigger_for: Callable[[Post], Awaitable[Trigger | ReminderCandidate | None]],
    ) -> None:
        """Finish a reply whose claim this replica took over from a dead one. The claim is renewed
        from the takeover on: reading the posts back can outlast a lease on a busy cluster, and
        the claim would then pass on to a second replica answering the same post."""
        if claim.response_post_id and await self._finish_reply(claim.post_id, claim.response_post_id):
            return
        # The previous claimant died before recording a reply, or before its turn started:
        # answer from the start (into the reply it left, if any: ``_reply_left``).
        async with self.claims.held(claim.post_id):
            trigger = await trigger_for(await self.deps.mattermost.get_post(claim.post_id))
        if isinstance(trigger, Trigger):
            # ``answer`` holds the claim again before its first wait: no renewal is missed.
            await self.answer(trigger, already_claimed=True)
        else:
            await self.claims.finish(claim.post_id)

    async def _finish_reply(self, post_id: str, response_post_id: str) -> bool:
        """Render the rest of the reply another replica started to ``post_id``, from its turn.
        False when no turn ever wrote into it (its replica died between recording it on the claim
        and starting the turn): the post is still to be answered, into that reply."""
        async with self.claims.held(post_id):
            rendered = await self._render_rest(post_id, response_post_id)
        if rendered:
            await self.claims.finish(post_id)
        return rendered

    async def _render_rest(self, post_id: str, response_post_id: str) -> bool:
        try:
            post = await self.deps.mattermost.get_post(response_post_id)
        except NotFound:
            # Deleted (by its author, or an admin): nothing is left to finish, and a claim left
            # open would be taken over and fail again every lease.
            logger.warning("the reply to take over is gone", extra={"post_id": post_id})
            return True
        if post.props.get(PROP_STREAM_STATUS) in FINAL_STATUSES:
            return True
        reply = await self.replies.of_post(post)
        with acting_for(reply.state.requester_id):
            events = self._attach(post.id)
            first = await _first(events)
            if isinstance(first, NotFound):
                await events.aclose()
                return False
            logger.info("taking over a reply another replica left", extra={"post_id": post.id})
            await self.replies.write(reply, _prepend(first, events), resumable=True)
        return True

    async def remind(self, candidate: ReminderCandidate, agents: list[AgentBot]) -> None:
        """Post the mention reminder when the thread's previous post was an agent's."""
        post = candidate.post
        thread = await self.deps.mattermost.get_post_thread(post.id)
        earlier = [p for p in thread if (p.create_at, p.id) < (post.create_at, post.id)]
        by_bot = {a.bot_user_id: a for a in agents}
        if not earlier or earlier[-1].user_id not in by_bot:
            return
        if await self.claims.claim(post.id) is None:
            return
        agent = by_bot[earlier[-1].user_id]
        poster = await self.replies.poster(agent.bot_user_id)
        props = {
            "bot_user_id": agent.bot_user_id,
            "bot_username": agent.username,
            "bot_display_name": agent.display_name,
            "target_post_id": post.id,
        }
        await poster.create_post(post.channel_id, REMINDER_TEXT, root_id=post.root_id, props=props, type=REMINDER_TYPE)
        await self.claims.finish(post.id)


async def _first(events: AsyncIterator[llm_pb2.ConversationEvent]) -> llm_pb2.ConversationEvent | DomainError | None:
    """The stream's first event; its error instead when it failed before any event."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
    except DomainError as err:
        return err


async def _prepend(
    first: llm_pb2.ConversationEvent | DomainError | None, rest: AsyncIterator[llm_pb2.ConversationEvent]
) -> AsyncIterator[llm_pb2.ConversationEvent]:
    if isinstance(first, DomainError):
        raise first
    if first is not None:
        yield first
        async for event in rest:
            yield event
