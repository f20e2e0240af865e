"""The LLM API through real processes: the llm service reaches FakeOpenAI (in this test process)
over loopback HTTP, reads services from the registry, and serves metrics over HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
import pytest_asyncio
from agents.common.v1 import common_pb2 as common_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.cluster.supervisor import free_port
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse, split_tokens
from tests.harness import ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Identity(user_id="admin0000000000000000000001", permissions=frozenset({MANAGE_SYSTEM}))
STALL_SECONDS = 1


class LlmCluster:
    """The module's cluster, its fake upstream, one saved service and the metrics port."""

    def __init__(self, harness: ClusterHarness, fake: FakeOpenAI, metrics_port: int) -> None:
        self.h = harness
        self.fake = fake
        self.metrics_port = metrics_port
        self.service_id = ""
        self.channel = harness.channel("llm")
        self.llm = llm_pb2_grpc.LLMStub(self.channel)

    async def create_service(self, **fields: object) -> str:
        values: dict[str, object] = {
            "name": "fake-openai",
            "type": "openaicompatible",
            "api_key": self.fake.api_key,
            "api_url": self.fake.base_url,
            "default_model": "gpt-4o",
            "streaming_timeout_seconds": STALL_SECONDS,
            **fields,
        }
        async with self.h.channel("index") as channel:
            reply = await registry_pb2_grpc.RegistryStub(channel).CreateService(
                registry_pb2.CreateServiceRequest(service=registry_pb2.ServiceConfig(**values)),
                metadata=self.h.metadata(ADMIN),
                timeout=10,
            )
        return reply.service.id

    def request(self, text: str = "Hello", **fields: object) -> llm_pb2.CompletionRequest:
        message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text=text)])
        values: dict[str, object] = {"service_id": self.service_id, "messages": [message], **fields}
        return llm_pb2.CompletionRequest(**values)

    async def stream(self, request: llm_pb2.CompletionRequest) -> list[llm_pb2.StreamEvent]:
        call = self.llm.StreamComplete(
            llm_pb2.StreamCompleteRequest(request=request), metadata=self.h.metadata(), timeout=20
        )
        return [event async for message in call for event in message.events]

    async def messages(self, request: llm_pb2.CompletionRequest) -> list[llm_pb2.StreamCompleteResponse]:
        call = self.llm.StreamComplete(
            llm_pb2.StreamCompleteRequest(request=request), metadata=self.h.metadata(), timeout=20
        )
        return [message async for message in call]

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp,
        ):
            return await resp.text()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(postgres: SessionPostgres) -> AsyncIterator[LlmCluster]:
    metrics_port = free_port()
    async with FakeOpenAI() as fake:
        env = {"AGENTS_LLM_METRICS_PORT": str(metrics_port)}
        async with ClusterHarness(postgres, env=env) as h:
            c = LlmCluster(h, fake, metrics_port)
            c.service_id = await c.create_service()
            yield c
            await c.channel.close()


def kinds(events: list[llm_pb2.StreamEvent]) -> list[str]:
    """Event kinds, a run of text deltas counted as one: tokens that reach the service in one
    socket read are coalesced into one message (providers/coalesce.py), so how many messages a
    run of text takes depends on timing; the text itself is checked separately."""
    out: list[str] = []
    for e in events:
        kind = str(e.WhichOneof("event"))
        if not (kind == "text_delta" and out and out[-1] == "text_delta"):
            out.append(kind)
    return out


def text(events: list[llm_pb2.StreamEvent]) -> str:
    return "".join(e.text_delta.text for e in events if e.HasField("text_delta"))


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_stream_complete_streams_text_usage_and_done(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.text("one two three", tokens=3, usage=(12, 3)))
    events = await cluster.stream(cluster.request())
    assert kinds(events) == ["text_delta", "usage", "done"]
    assert text(events) == "one two three"
    assert events[-2].usage.input_tokens == 12 and events[-2].usage.output_tokens == 3
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_END_TURN


async def test_a_fast_answer_comes_in_few_messages_after_the_first_token_which_goes_alone(
    cluster: LlmCluster,
) -> None:
    answer = " ".join(f"w{i}" for i in range(40))
    # 2 ms apart: each token its own socket read, so only the service's coalescing joins them.
    cluster.fake.enqueue(FakeResponse.text(answer, tokens=40, usage=(12, 40), token_delay=0.002))
    started = time.monotonic()
    messages = await cluster.messages(cluster.request())
    elapsed_ms = (time.monotonic() - started) * 1000
    # The first read goes at once, alone (under load it may hold more than the first token).
    assert [e.WhichOneof("event") for e in messages[0].events] == ["text_delta"]
    assert split_tokens(answer, 40)[0] in messages[0].events[0].text_delta.text
    # After the first message, at most one per 20 ms window, plus the one that carries Done: a
    # bound that follows the stream's real duration, so a slow machine only loosens it. One
    # message per token (~80 ms of tokens in 40 messages) breaks it.
    assert len(messages) <= elapsed_ms / 20 + 2
    events = [e for m in messages for e in m.events]
    assert kinds(events) == ["text_delta", "usage", "done"]
    assert text(events) == answer
    assert events[-2].usage.output_tokens == 40
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_END_TURN


async def test_a_stream_failing_midway_ends_with_an_error_event_then_done(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.failing_after(2))
    messages = await cluster.messages(cluster.request())
    events = [e for m in messages for e in m.events]
    assert kinds(events) == ["text_delta", "error", "done"]
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_ERROR


async def test_errors_before_the_first_event_fail_the_stream_with_a_status(cluster: LlmCluster) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.messages(cluster.request(model="gpt-9"))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_stream_complete_delivers_a_tool_call_with_parsed_arguments(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.tool_call("lookup_weather", '{"city": "Lisbon"}'))
    events = await cluster.stream(cluster.request())
    calls = [e.tool_call for e in events if e.HasField("tool_call")]
    assert len(calls) == 1 and calls[0].name == "lookup_weather" and calls[0].valid
    assert dict(calls[0].arguments) == {"city": "Lisbon"}
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_TOOL_USE


async def test_a_failure_mid_stream_arrives_as_an_error_event_then_done(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.failing_after(2))
    events = await cluster.stream(cluster.request())
    assert kinds(events) == ["text_delta", "error", "done"]
    assert text(events) == "".join(FakeResponse.failing_after(2).tokens[:2])
    assert events[-2].error.error_class == common_pb2.ERROR_CLASS_PROVIDER
    assert events[-2].error.message
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_ERROR


async def test_a_stalled_stream_is_ended_after_the_services_timeout(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.stalling_after(2))
    started = time.monotonic()
    events = await cluster.stream(cluster.request())
    assert kinds(events) == ["text_delta", "error", "done"]
    assert "stopped responding" in events[-2].error.message
    assert time.monotonic() - started < STALL_SECONDS + 5


async def test_an_unknown_model_fails_with_failed_precondition_and_the_providers_message(
    cluster: LlmCluster,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.stream(cluster.request(model="gpt-9"))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "The model `gpt-9` does not exist" in (failure.value.details() or "")


async def test_complete_gathers_the_whole_answer(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.text("all at once", tokens=3))
    reply = await cluster.llm.Complete(
        llm_pb2.CompleteRequest(request=cluster.request()), metadata=cluster.h.metadata(), timeout=20
    )
    assert reply.text == "all at once" and reply.model == "gpt-4o"
    assert reply.stop_reason == llm_pb2.STOP_REASON_END_TURN


async def test_count_tokens_counts_an_openai_model_with_its_tokenizer(cluster: LlmCluster) -> None:
    reply = await cluster.llm.CountTokens(
        llm_pb2.CountTokensRequest(request=cluster.request("Hello there, how are you?")),
        metadata=cluster.h.metadata(),
        timeout=20,
    )
    assert reply.source == "counted" and reply.model == "gpt-4o"
    assert 5 < reply.input_tokens < 20


async def test_list_models_of_a_saved_service_asks_the_provider(cluster: LlmCluster) -> None:
    reply = await cluster.llm.ListModels(
        llm_pb2.ListModelsRequest(service_id=cluster.service_id), metadata=cluster.h.metadata(), timeout=10
    )
    assert "gpt-4o" in reply.model_ids


async def test_list_models_with_inline_credentials_is_for_system_admins_only(cluster: LlmCluster) -> None:
    credentials = llm_pb2.ServiceCredentials(
        type="openaicompatible", api_key=cluster.fake.api_key, api_url=cluster.fake.base_url
    )
    request = llm_pb2.ListModelsRequest(credentials=credentials)
    reply = await cluster.llm.ListModels(request, metadata=cluster.h.metadata(ADMIN), timeout=10)
    assert "gpt-4o" in reply.model_ids
    user = Identity(user_id="user0000000000000000000001")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.llm.ListModels(request, metadata=cluster.h.metadata(user), timeout=10)
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_transcribe_is_refused_for_providers_without_speech_to_text(cluster: LlmCluster) -> None:
    anthropic = await cluster.create_service(name="claude", type="anthropic", api_key="sk-ant-test-0123456789")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.llm.Transcribe(
            llm_pb2.TranscribeRequest(service_id=anthropic, audio=b"RIFF...."),
            metadata=cluster.h.metadata(),
            timeout=10,
        )
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_transcribe_uploads_the_audio_whisper_style_and_returns_webvtt(cluster: LlmCluster) -> None:
    reply = await cluster.llm.Transcribe(
        llm_pb2.TranscribeRequest(
            service_id=cluster.service_id, audio=b"ID3" + b"\x00" * 512, filename="standup.mp3", mime_type="audio/mpeg"
        ),
        metadata=cluster.h.metadata(),
        timeout=10,
    )
    assert reply.vtt == cluster.fake.transcript_vtt and reply.text == "Hello from the recording."
    sent = next(r for r in reversed(cluster.fake.requests) if r.path == "/v1/audio/transcriptions")
    assert sent.body["model"] == "whisper-1" and sent.body["response_format"] == "vtt"
    assert sent.body["file"] == {"filename": "standup.mp3", "content_type": "audio/mpeg", "size": 515}
    assert sent.headers["Authorization"] == f"Bearer {cluster.fake.api_key}"


async def test_metrics_count_requests_by_outcome_and_record_overhead(cluster: LlmCluster) -> None:
    before = await cluster.metrics()
    cluster.fake.enqueue(FakeResponse.text(tokens=2), FakeResponse.failing_after(1))
    await cluster.stream(cluster.request(operation="metrics_probe"))
    await cluster.stream(cluster.request(operation="metrics_probe"))
    after = await cluster.metrics()
    labels = {"provider": "openaicompatible", "model": "gpt-4o"}
    for outcome in ("success", "provider"):
        grown = metric_value(after, "agents_llm_requests_total", **labels, outcome=outcome) - metric_value(
            before, "agents_llm_requests_total", **labels, outcome=outcome
        )
        assert grown == 1, outcome
    assert metric_value(after, "agents_llm_overhead_seconds_count", operation="metrics_probe") == 2
    assert 0 < metric_value(after, "agents_llm_overhead_seconds_sum", operation="metrics_probe") < 1


async def test_the_completion_span_carries_provider_model_tokens_and_overhead(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(FakeResponse.text(tokens=2, usage=(31, 2)))
    await cluster.stream(cluster.request(operation="span_probe", agent_username="helper"))

    def found(spans: list[dict]) -> bool:
        return any(s["attributes"].get("agents.llm.operation") == "span_probe" for s in spans)

    spans = await cluster.h.wait_for_spans(found)
    span = next(s for s in spans if s["attributes"].get("agents.llm.operation") == "span_probe")
    assert span["name"] == "llm chat completion" and span["service"] == "llm"
    attrs = span["attributes"]
    assert attrs["agents.llm.provider"] == "openaicompatible" and attrs["agents.llm.model"] == "gpt-4o"
    assert (attrs["agents.llm.input_tokens"], attrs["agents.llm.output_tokens"]) == (31, 2)
    assert 0 <= attrs["agents.llm.overhead_seconds"] < 1


async def test_the_provider_key_never_appears_in_logs_errors_or_spans(cluster: LlmCluster) -> None:
    wrong_key_service = await cluster.create_service(name="wrong-key", api_key="sk-wrong-key-abcdef0123456789")
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.stream(cluster.request(service_id=wrong_key_service))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for key in (cluster.fake.api_key, "sk-wrong-key-abcdef0123456789", "sk-wro"):
        assert key not in (failure.value.details() or "")
        for service, lines in cluster.h.logs.items():
            assert not any(key in line for line in lines), service
        assert key not in json.dumps(cluster.h.spans())


async def test_sigterm_lets_an_in_flight_stream_finish_within_the_grace(cluster: LlmCluster) -> None:
    h = cluster.h
    assert h.cluster is not None
    cluster.fake.enqueue(FakeResponse.text(tokens=8, token_delay=0.15))
    call = cluster.llm.StreamComplete(
        llm_pb2.StreamCompleteRequest(request=cluster.request()), metadata=h.metadata(), timeout=20
    )
    events = list((await call.read()).events)
    process = h.cluster.processes["llm"].proc
    process.send_signal(signal.SIGTERM)
    while (message := await call.read()) is not grpc.aio.EOF:
        events.extend(message.events)
    # 150 ms apart, each token is its own read: none are coalesced.
    assert kinds(events)[-1] == "done" and [e.WhichOneof("event") for e in events].count("text_delta") == 8
    assert await asyncio.wait_for(process.wait(), 10) == 0
    # Bring the service back for whatever runs after this test.
    await h.cluster.stop_service("llm")
    await h.cluster.start_service("llm")
    await h.cluster.wait_healthy(names=("llm",), timeout=30)


# ---- fallbackServiceID ------------------------------------------------------------------------

ATTEMPTS = 3  # the streaming engine's tries of one service (EngineOptions.max_attempts)


@pytest_asyncio.fixture(loop_scope="session")
async def backup(cluster: LlmCluster) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    """A second upstream and a service on ``cluster.fake`` that falls back to it (both use their default model)."""
    async with FakeOpenAI(models=("gpt-4o",)) as fake:
        backup_id = await cluster.create_service(name="backup", api_key=fake.api_key, api_url=fake.base_url)
        main_id = await cluster.create_service(name="main", fallback_service_id=backup_id)
        yield fake, main_id
        cluster.fake.drop_script()


async def test_a_service_failing_before_answering_falls_back_to_its_fallback_service(
    cluster: LlmCluster, backup: tuple[FakeOpenAI, str]
) -> None:
    fake, main_id = backup
    cluster.fake.enqueue(*[FakeResponse.http_error(503)] * ATTEMPTS)
    fake.enqueue(FakeResponse.text("the backup answers", tokens=3))
    events = await cluster.stream(cluster.request(service_id=main_id, model="gpt-5"))
    assert text(events) == "the backup answers"
    assert events[-1].done.stop_reason == llm_pb2.STOP_REASON_END_TURN
    assert cluster.fake.queued == 0 and fake.queued == 0
    # The fallback is asked for its own default model, not the one the main service was asked for.
    assert fake.requests[-1].body["model"] == "gpt-4o"


async def test_a_unary_completion_falls_back_too(cluster: LlmCluster, backup: tuple[FakeOpenAI, str]) -> None:
    fake, main_id = backup
    cluster.fake.enqueue(*[FakeResponse.http_error(500)] * ATTEMPTS)
    fake.enqueue(FakeResponse.text("unary backup", tokens=2))
    reply = await cluster.llm.Complete(
        llm_pb2.CompleteRequest(request=cluster.request(service_id=main_id)), metadata=cluster.h.metadata(), timeout=20
    )
    assert reply.text == "unary backup"


async def test_a_failure_after_the_first_token_does_not_fall_back(
    cluster: LlmCluster, backup: tuple[FakeOpenAI, str]
) -> None:
    fake, main_id = backup
    cluster.fake.enqueue(FakeResponse.failing_after(2))
    before = len(fake.requests)
    events = await cluster.stream(cluster.request(service_id=main_id))
    assert kinds(events) == ["text_delta", "error", "done"]
    assert len(fake.requests) == before


async def test_a_service_without_fallback_fails_as_before(cluster: LlmCluster) -> None:
    cluster.fake.enqueue(*[FakeResponse.http_error(503)] * ATTEMPTS)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await cluster.stream(cluster.request())
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert cluster.fake.queued == 0
