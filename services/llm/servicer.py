"""agents.llm.v1.LLM: thin translation between messages and ``CompletionService``.

Status codes come from the domain errors the completion layer raises (``outcomes.py`` decides
which, the shared interceptor maps them); nothing here decides an error's meaning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import grpc
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.common.errors import InvalidInput, PermissionDenied
from services.common.identity import identity
from services.llm import outcomes, presets
from services.llm.coalescing import coalesced
from services.llm.completion import CompletionService
from services.llm.completion_proto import (
    completion_request_from_proto,
    events_to_proto,
    inline_credentials_to_settings,
    result_to_proto,
)
from services.llm.conversations.bridge import BridgeTools
from services.llm.providers.base import Provider, ProviderError, ServiceSettings
from services.llm.providers.transcription import Transcript
from services.llm.tokens import TiktokenCounter, count_messages

Transcriber = Callable[..., Awaitable[Transcript]]


class LLMServicer(llm_pb2_grpc.LLMServicer):
    """The LLM service's RPCs over the completion layer and a transcriber."""

    def __init__(
        self,
        completions: CompletionService,
        transcriber: Transcriber,
        bridge_tools: BridgeTools,
        *,
        coalesce_window: float,
    ) -> None:
        self.completions = completions
        self.transcriber = transcriber
        self.bridge_tools = bridge_tools
        self.coalesce_window = coalesce_window

    async def Complete(
        self,
        request: llm_pb2.CompleteRequest,
        context: grpc.aio.ServicerContext[llm_pb2.CompleteRequest, llm_pb2.CompleteResponse],
    ) -> llm_pb2.CompleteResponse:
        """One completion, gathered (see the proto for the status codes); a known one-shot
        operation gets its instruction here (``presets``)."""
        service_id, neutral, attribution = completion_request_from_proto(request.request)
        neutral = presets.with_preset(neutral)
        _, model = await self.completions.model_for(service_id, neutral)
        result = await self.completions.complete(service_id, neutral, attribution)
        return result_to_proto(result, model)

    async def StreamComplete(
        self,
        request: llm_pb2.StreamCompleteRequest,
        context: grpc.aio.ServicerContext[llm_pb2.StreamCompleteRequest, llm_pb2.StreamCompleteResponse],
    ) -> AsyncIterator[llm_pb2.StreamCompleteResponse]:
        """Events as the provider produces them, the first at once and the rest coalesced into
        at most one message per ``coalesce_window`` (``coalescing.coalesced``). With ``tools``
        the model's calls run in the agent loop and the answer follows (``BridgeTools``)."""
        service_id, neutral, attribution = completion_request_from_proto(request.request)
        if request.HasField("tools"):
            tools = request.tools
            stream = self.bridge_tools.stream(neutral, attribution, tools.agent_id, list(tools.allowed_tools))
        else:
            stream = self.completions.stream(service_id, neutral, attribution)
        async with aclosing(coalesced(stream, window=self.coalesce_window)) as batches:
            async for batch in batches:
                yield events_to_proto(batch)

    async def CountTokens(
        self,
        request: llm_pb2.CountTokensRequest,
        context: grpc.aio.ServicerContext[llm_pb2.CountTokensRequest, llm_pb2.CountTokensResponse],
    ) -> llm_pb2.CountTokensResponse:
        """Tokens the request's messages would use, with the counter's exactness."""
        service_id, neutral, _ = completion_request_from_proto(request.request)
        provider, model = await self.completions.model_for(service_id, neutral)
        counter = await self.completions.counter(model)
        return llm_pb2.CountTokensResponse(
            input_tokens=count_messages(counter, neutral.messages),
            source="counted" if isinstance(counter, TiktokenCounter) else "estimated",
            input_token_limit=provider.settings.input_token_limit,
            model=model,
        )

    async def ListModels(
        self,
        request: llm_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[llm_pb2.ListModelsRequest, llm_pb2.ListModelsResponse],
    ) -> llm_pb2.ListModelsResponse:
        """Models of a saved service, or of inline credentials (system admins only)."""
        source = request.WhichOneof("source")
        if source == "service_id":
            provider = await self.completions.catalog.get(request.service_id)
            return llm_pb2.ListModelsResponse(model_ids=await _list_models(provider))
        if source == "credentials":
            caller = identity()
            if not caller.is_system_admin:
                raise PermissionDenied("only system admins may list models with unsaved credentials")
            settings: ServiceSettings = inline_credentials_to_settings(request.credentials)
            provider = self.completions.catalog.for_settings(settings)
            try:
                return llm_pb2.ListModelsResponse(model_ids=await _list_models(provider))
            finally:
                await provider.aclose()
        raise InvalidInput("either service_id or credentials is required", field="source")

    async def Transcribe(
        self,
        request: llm_pb2.TranscribeRequest,
        context: grpc.aio.ServicerContext[llm_pb2.TranscribeRequest, llm_pb2.TranscribeResponse],
    ) -> llm_pb2.TranscribeResponse:
        """Speech to text with the service (Whisper-style providers only)."""
        if not request.service_id:
            raise InvalidInput("service_id is required", field="service_id")
        provider = await self.completions.catalog.get(request.service_id)
        try:
            transcript = await self.transcriber(
                provider.settings,
                request.audio,
                filename=request.filename,
                mime_type=request.mime_type,
                language=request.language,
            )
        except ProviderError as exc:
            raise outcomes.domain_error_for(exc) from None
        return llm_pb2.TranscribeResponse(vtt=transcript.vtt, text=transcript.text)


async def _list_models(provider: Provider) -> list[str]:
    try:
        return list(await provider.list_models())
    except ProviderError as exc:
        raise outcomes.domain_error_for(exc) from None
