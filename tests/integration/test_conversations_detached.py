"""Turns that outlive their caller, leased post claims, and re-attaching to a running turn, over
gRPC against real llm/index processes, real PostgreSQL, a fake OpenAI upstream and a fake
Mattermost (the tools are the fake Tools server: these turns call none)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.cluster.supervisor import free_port
from tests.fakes.openai_script import FakeResponse
from tests.harness import SessionPostgres
from tests.integration.llm_conversation_support import World, collect, done_reason, kinds, started_world, text_of
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

SLOW = "word " * 30


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with started_world(postgres) as w:
        yield w


def claim(post_id: str, claimant: str, **fields: Any) -> llm_pb2.ClaimPostRequest:
    return llm_pb2.ClaimPostRequest(post_id=post_id, claimant=claimant, **fields)


def renew(post_id: str, claimant: str, **fields: Any) -> llm_pb2.RenewClaimRequest:
    return llm_pb2.RenewClaimRequest(post_id=post_id, claimant=claimant, **fields)


def finish(post_id: str, claimant: str) -> llm_pb2.FinishClaimRequest:
    return llm_pb2.FinishClaimRequest(post_id=post_id, claimant=claimant)


async def refused(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


def new_post_id() -> str:
    return secrets.token_hex(13)


async def swept(world: World, post_id: str, claimant: str) -> llm_pb2.TakeOverExpiredClaimResponse | None:
    """One sweep's take, if it is ``post_id``'s claim (other tests' leftovers are taken too)."""
    request = llm_pb2.TakeOverExpiredClaimRequest(claimant=claimant)
    try:
        taken = await world.conversations.TakeOverExpiredClaim(request, metadata=world.h.metadata())
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
        return None
    return taken if taken.post_id == post_id else None


# ---- post claims --------------------------------------------------------------------------------


async def test_of_claimants_racing_for_a_post_exactly_one_wins(world: World) -> None:
    post = new_post_id()
    md = world.h.metadata()
    results = await asyncio.gather(
        *(world.conversations.ClaimPost(claim(post, f"replica-{n}"), metadata=md) for n in range(6)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, llm_pb2.ClaimPostResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and won[0].post_id == post and not won[0].taken_over
    assert [e.code() for e in lost] == [grpc.StatusCode.ALREADY_EXISTS] * 5


async def test_the_claimant_renews_its_claim_and_records_the_reply_post(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.ClaimPost(claim(post, "gw-a"), metadata=md)
    renewed = await world.conversations.RenewClaim(renew(post, "gw-a", response_post_id="reply-1"), metadata=md)
    assert renewed.response_post_id == "reply-1"
    kept = await world.conversations.RenewClaim(renew(post, "gw-a"), metadata=md)
    assert kept.response_post_id == "reply-1"
    assert await refused(world.conversations.ClaimPost(claim(post, "gw-b"), metadata=md)) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    await world.conversations.FinishClaim(finish(post, "gw-a"), metadata=md)


async def test_one_call_renews_every_claim_the_claimant_holds_and_names_the_others(world: World) -> None:
    md = world.h.metadata()
    held = [new_post_id() for _ in range(3)]
    for post in held:
        await world.conversations.ClaimPost(claim(post, "gw-a", lease_seconds=1), metadata=md)
    finished, foreign, unclaimed = new_post_id(), new_post_id(), new_post_id()
    await world.conversations.ClaimPost(claim(finished, "gw-a"), metadata=md)
    await world.conversations.FinishClaim(finish(finished, "gw-a"), metadata=md)
    await world.conversations.ClaimPost(claim(foreign, "gw-b"), metadata=md)

    asked = [held[0], finished, held[1], foreign, unclaimed, held[2]]
    renewed = await world.conversations.RenewClaims(
        llm_pb2.RenewClaimsRequest(claimant="gw-a", lease_seconds=3600, post_ids=asked), metadata=md
    )
    assert list(renewed.lost_post_ids) == [finished, foreign, unclaimed]
    # Their one-second leases became an hour's: no sweep takes them, another claimant is refused.
    await asyncio.sleep(1.5)
    for post in held:
        assert await refused(world.conversations.ClaimPost(claim(post, "gw-b"), metadata=md)) == (
            grpc.StatusCode.ALREADY_EXISTS
        )
        await world.conversations.FinishClaim(finish(post, "gw-a"), metadata=md)
    await world.conversations.FinishClaim(finish(foreign, "gw-b"), metadata=md)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"post_ids": ["p"]}, "claimant"),
        ({"claimant": "gw-a", "post_ids": ["p", ""]}, "post_ids"),
        ({"claimant": "gw-a", "post_ids": [f"p{n}" for n in range(1001)]}, "post_ids"),
        ({"claimant": "gw-a", "post_ids": ["p"], "lease_seconds": 3601}, "lease_seconds"),
    ],
)
async def test_renewing_claims_refuses_what_it_cannot_apply(world: World, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.conversations.RenewClaims(llm_pb2.RenewClaimsRequest(**fields), metadata=world.h.metadata())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")


async def test_a_sweep_takes_over_an_expired_unfinished_claim_with_its_reply_post(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.ClaimPost(claim(post, "gw-dead", lease_seconds=1), metadata=md)
    await world.conversations.RenewClaim(
        renew(post, "gw-dead", lease_seconds=1, response_post_id="reply-2"), metadata=md
    )

    taken = await poll(lambda: swept(world, post, "gw-live"), within=15.0, interval=0.05)
    assert taken.response_post_id == "reply-2"
    assert await refused(world.conversations.ClaimPost(claim(post, "gw-dead"), metadata=md)) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    await world.conversations.FinishClaim(finish(post, "gw-live"), metadata=md)


async def test_a_finished_claim_can_no_longer_be_claimed(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.ClaimPost(claim(post, "gw-a"), metadata=md)
    await world.conversations.FinishClaim(finish(post, "gw-a"), metadata=md)
    for claimant in ("gw-a", "gw-b"):
        assert await refused(world.conversations.ClaimPost(claim(post, claimant), metadata=md)) == (
            grpc.StatusCode.ALREADY_EXISTS
        )


async def test_a_claimant_whose_claim_was_taken_over_can_neither_renew_nor_release_it(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.ClaimPost(claim(post, "gw-slow", lease_seconds=1), metadata=md)

    async def take_over() -> llm_pb2.ClaimPostResponse | None:
        try:
            return await world.conversations.ClaimPost(claim(post, "gw-fast"), metadata=md)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.ALREADY_EXISTS
            return None

    assert (await poll(take_over, within=15.0, interval=0.05)).taken_over
    assert await refused(world.conversations.RenewClaim(renew(post, "gw-slow"), metadata=md)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    release = llm_pb2.ReleaseClaimRequest(post_id=post, claimant="gw-slow")
    assert await refused(world.conversations.ReleaseClaim(release, metadata=md)) == grpc.StatusCode.FAILED_PRECONDITION
    await world.conversations.FinishClaim(finish(post, "gw-fast"), metadata=md)


async def test_a_released_claim_is_taken_over_by_the_next_sweep_before_its_lease_ends(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.ClaimPost(claim(post, "gw-stopping", lease_seconds=3600), metadata=md)
    await world.conversations.RenewClaim(
        renew(post, "gw-stopping", lease_seconds=3600, response_post_id="reply-3"), metadata=md
    )
    await world.conversations.ReleaseClaim(
        llm_pb2.ReleaseClaimRequest(post_id=post, claimant="gw-stopping"), metadata=md
    )

    taken = await poll(lambda: swept(world, post, "gw-next"), within=15.0, interval=0.05)
    assert taken.response_post_id == "reply-3"
    await world.conversations.FinishClaim(finish(post, "gw-next"), metadata=md)


async def test_a_claim_changing_hands_names_the_reply_its_turn_writes_into(world: World) -> None:
    """A claimant that started the turn and died before recording its reply post (or recorded
    another, deleted since): the next claimant must finish the turn's reply, not start a second."""
    erin = world.mm.add_user("erin")
    agent = await world.agent("handoverbot")
    md = world.h.metadata()
    for recorded in ("", "a-reply-deleted-since"):
        world.openai.enqueue(FakeResponse.text("Answered once."), FakeResponse.text("Title"))
        request, _ = world.dm(erin, agent, "hello")
        post = request.post_id
        await world.conversations.ClaimPost(claim(post, "gw-dead", lease_seconds=1), metadata=md)
        if recorded:
            await world.conversations.RenewClaim(
                renew(post, "gw-dead", lease_seconds=1, response_post_id=recorded), metadata=md
            )
        assert text_of(await collect(world.conversations.Respond(request, metadata=world.md(erin)))) == (
            "Answered once."
        )

        taken = await poll(lambda: swept(world, post, "gw-live"), within=15.0, interval=0.05)  # noqa: B023
        assert taken.response_post_id == request.response_post_id
        await world.conversations.FinishClaim(finish(post, "gw-live"), metadata=md)

    # A late ClaimPost taking an expired claim over learns the reply the same way.
    world.openai.enqueue(FakeResponse.text("Answered once."), FakeResponse.text("Title"))
    request, _ = world.dm(erin, agent, "hello again")
    await world.conversations.ClaimPost(claim(request.post_id, "gw-dead", lease_seconds=1), metadata=md)
    await collect(world.conversations.Respond(request, metadata=world.md(erin)))

    async def taken_over() -> llm_pb2.ClaimPostResponse | None:
        try:
            return await world.conversations.ClaimPost(claim(request.post_id, "gw-late"), metadata=md)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.ALREADY_EXISTS
            return None

    late = await poll(taken_over, within=15.0, interval=0.05)
    assert late.taken_over and late.response_post_id == request.response_post_id
    await world.conversations.FinishClaim(finish(request.post_id, "gw-late"), metadata=md)


async def test_a_post_finished_without_a_claim_is_never_claimed(world: World) -> None:
    post, md = new_post_id(), world.h.metadata()
    await world.conversations.FinishClaim(finish(post, "gw-a"), metadata=md)
    await world.conversations.FinishClaim(finish(post, "gw-a"), metadata=md)  # a retried call
    assert await refused(world.conversations.ClaimPost(claim(post, "gw-b"), metadata=md)) == (
        grpc.StatusCode.ALREADY_EXISTS
    )


async def test_respond_answers_a_post_the_gateway_claimed_first(world: World) -> None:
    alice = world.mm.add_user("claimed-alice")
    agent = await world.agent("claimbot")
    world.openai.enqueue(FakeResponse.text("Claimed and answered."), FakeResponse.text("Title"))
    request, _ = world.dm(alice, agent, "hello")
    md = world.h.metadata()
    await world.conversations.ClaimPost(claim(request.post_id, "gw-a"), metadata=md)
    await world.conversations.RenewClaim(
        renew(request.post_id, "gw-a", response_post_id=request.response_post_id), metadata=md
    )
    events = await collect(world.conversations.Respond(request, metadata=world.md(alice)))
    assert text_of(events) == "Claimed and answered."
    assert await refused(collect(world.conversations.Respond(request, metadata=world.md(alice)))) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    kept = await world.conversations.ClaimPost(claim(request.post_id, "gw-a"), metadata=md)
    assert kept.response_post_id == request.response_post_id


# ---- detached turns and Attach --------------------------------------------------------------------


async def test_a_respond_caller_that_disconnects_does_not_stop_the_turn(world: World) -> None:
    bea = world.mm.add_user("bea")
    agent = await world.agent("steadybot")
    world.openai.enqueue(FakeResponse.text(SLOW, tokens=30, token_delay=0.03), FakeResponse.text("Title"))
    request, _ = world.dm(bea, agent, "a long one please")
    async with world.h.channel("llm") as gateway:
        call = llm_pb2_grpc.ConversationsStub(gateway).Respond(request, metadata=world.md(bea))
        first = [r.event async for r in _until_text(call)]
        call.cancel()
    conversation_id = first[0].conversation_id

    async def answered() -> bool:
        got = await world.conversations.GetConversation(
            llm_pb2.GetConversationRequest(id=conversation_id), metadata=world.md(bea)
        )
        turns = got.conversation.turns
        return len(turns) == 2 and turns[1].content[0]["text"] == SLOW

    await poll(answered, within=15.0, interval=0.05)


async def test_attach_replays_the_text_so_far_then_the_live_events(world: World) -> None:
    cleo = world.mm.add_user("cleo")
    agent = await world.agent("replaybot")
    world.openai.enqueue(FakeResponse.text(SLOW, tokens=30, token_delay=0.05), FakeResponse.text("Title"))
    request, _ = world.dm(cleo, agent, "tell me slowly")
    call = world.conversations.Respond(request, metadata=world.md(cleo))
    seen = [r.event async for r in _until_text(call, count=3)]
    attach = world.conversations.Attach(
        llm_pb2.AttachRequest(post_id=request.response_post_id), metadata=world.md(cleo)
    )
    attached = await collect(attach)
    rest = [r.event async for r in call]
    assert kinds(attached)[:2] == ["control", "text_delta"] and attached[0].control == "start"
    replayed = attached[1].stream.text_delta.text
    assert replayed.startswith(text_of(seen)) and len(replayed) < len(SLOW)
    assert text_of(attached) == SLOW == text_of(seen + rest)
    assert done_reason(attached) == llm_pb2.STOP_REASON_END_TURN
    assert all(e.conversation_id == seen[0].conversation_id for e in attached)


async def test_attach_to_a_post_no_turn_wrote_into_is_not_found(world: World) -> None:
    dora = world.mm.add_user("dora")
    attach = world.conversations.Attach(llm_pb2.AttachRequest(post_id=new_post_id()), metadata=world.md(dora))
    assert await refused(collect(attach)) == grpc.StatusCode.NOT_FOUND


async def test_attach_to_a_turn_that_is_gone_is_a_failed_precondition_not_a_not_found(world: World) -> None:
    """A gateway tells a reply some turn wrote into (kept) from one none ever did (deleted when a
    second turn was refused) by these two codes: a turn no longer running here (ended and no
    longer retained, or this replica restarted) and one whose replica is unreachable are
    FAILED_PRECONDITION."""
    finn = world.mm.add_user("finn")
    agent = await world.agent("endedbot")
    world.openai.enqueue(FakeResponse.text("Over."), FakeResponse.text("Title"))
    request, _ = world.dm(finn, agent, "hello")
    assert text_of(await collect(world.conversations.Respond(request, metadata=world.md(finn)))) == "Over."
    columns = "conversationid, userid, kind, params, noregen, state, stoprequested, updatedat"
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT runner FROM llm_streams WHERE responsepostid = %s", (request.response_post_id,))
        ).fetchone()
        assert row is not None
        gone = {"ran here, not retained": row[0], "ran on a replica that is gone": f"127.0.0.1:{free_port()}"}
        posts = {}
        for case, runner in gone.items():
            posts[case] = new_post_id()
            await conn.execute(
                f"INSERT INTO llm_streams (responsepostid, requestpostid, runner, {columns}) "
                f"SELECT %s, '', %s, {columns} FROM llm_streams WHERE responsepostid = %s",
                (posts[case], runner, request.response_post_id),
            )
    for case, post_id in posts.items():
        attach = world.conversations.Attach(llm_pb2.AttachRequest(post_id=post_id), metadata=world.md(finn))
        assert await refused(collect(attach)) == grpc.StatusCode.FAILED_PRECONDITION, case


async def _until_text(call: Any, count: int = 1) -> AsyncIterator[llm_pb2.RespondResponse]:
    """The call's responses up to its ``count``-th text delta."""
    seen = 0
    async for response in call:
        yield response
        if response.event.stream.WhichOneof("event") == "text_delta":
            seen += 1
            if seen >= count:
                return
