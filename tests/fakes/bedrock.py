"""A fake Bedrock runtime: ConverseStream in the real AWS event-stream framing, SigV4 checked.

Frames are encoded here byte for byte (prelude with total and header lengths, prelude CRC32,
typed headers, JSON payload, message CRC32) so the provider's botocore decoder sees exactly what
AWS sends. Every request's ``Authorization`` header is parsed and its signature recomputed with
botocore from the raw request; a missing or wrong signature gets AWS's 403.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer

ACCESS_KEY_ID = "AKIAFAKEFAKEFAKE1234"
SECRET_ACCESS_KEY = "fake/secret+AWS/key/0123456789abcdefghij"
REGION = "us-east-1"
MODEL_ID = "anthropic.claude-3-7-sonnet-20250219-v1:0"
MODELS = (MODEL_ID, "amazon.nova-pro-v1:0")
EVENT_STREAM = "application/vnd.amazon.eventstream"

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message; every header is a string (type 7), as Bedrock sends them."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF) + encoded + payload
    return head + struct.pack(">I", binascii.crc32(head) & 0xFFFFFFFF)


def event(kind: str, body: dict[str, Any]) -> bytes:
    """An ``event`` frame; the payload is the event's own JSON (plus the ``p`` padding AWS adds)."""
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps({**body, "p": "abcdefgh"}).encode())


def exception(kind: str, message: str) -> bytes:
    """An ``exception`` frame such as ``throttlingException`` sent inside a 200 stream."""
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps({"message": message}).encode())


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})


def _end(stop_reason: str, output_tokens: int) -> list[bytes]:
    usage = {
        "inputTokens": 11,
        "outputTokens": output_tokens,
        "totalTokens": 11 + output_tokens,
        "cacheReadInputTokens": 2,
    }
    return [
        event("messageStop", {"stopReason": stop_reason}),
        event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}}),
    ]


def _reply(chunks: list[bytes], *, stall: bool = False) -> Reply:
    return Reply(chunks=tuple(chunks), content_type=EVENT_STREAM, stall=stall)


def _text(index: int, tokens: list[str]) -> list[bytes]:
    return [
        *(_delta(index, {"text": t}) for t in tokens),
        event("contentBlockStop", {"contentBlockIndex": index}),
    ]


def text(tokens: list[str]) -> Reply:
    """A plain answer, one text delta per token."""
    return _reply([event("messageStart", {"role": "assistant"}), *_text(0, tokens), *_end("end_turn", len(tokens))])


def tool_call(tool_id: str, name: str, input_chunks: list[str]) -> Reply:
    """A text block then a toolUse block whose input arrives as JSON text in pieces."""
    tool = [
        event(
            "contentBlockStart",
            {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": tool_id, "name": name}}},
        ),
        *(_delta(1, {"toolUse": {"input": c}}) for c in input_chunks),
        event("contentBlockStop", {"contentBlockIndex": 1}),
    ]
    return _reply([event("messageStart", {"role": "assistant"}), *_text(0, ["On it."]), *tool, *_end("tool_use", 9)])


def reasoning(thoughts: list[str], signature: str, tokens: list[str]) -> Reply:
    """reasoningContent text deltas and a signature delta, then the answer."""
    block = [
        *(_delta(0, {"reasoningContent": {"text": t}}) for t in thoughts),
        _delta(0, {"reasoningContent": {"signature": signature}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
    ]
    return _reply([event("messageStart", {"role": "assistant"}), *block, *_text(1, tokens), *_end("end_turn", 20)])


def http_error(status: int, error_type: str, message: str, *, retry_after: str | None = None) -> Reply:
    """A non-200 answer as the Bedrock runtime sends it (type in ``x-amzn-ErrorType``)."""
    headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Reply(status=status, chunks=(json.dumps({"message": message}).encode(),), headers=headers)


def error_mid_stream(tokens: list[str], kind: str = "modelStreamErrorException", message: str = "boom") -> Reply:
    """Some text, then an exception frame."""
    return _reply([event("messageStart", {"role": "assistant"}), *_text(0, tokens)[:-1], exception(kind, message)])


def stall(tokens: list[str]) -> Reply:
    """Some text, then silence on an open connection."""
    return _reply([event("messageStart", {"role": "assistant"}), *_text(0, tokens)[:-1]], stall=True)


def malformed(tokens: list[str]) -> Reply:
    """Some text, then a frame whose message CRC is wrong."""
    bad = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lost"}}))
    bad[-1] ^= 0xFF
    return _reply([event("messageStart", {"role": "assistant"}), *_text(0, tokens)[:-1], bytes(bad)])


def oversized_frame() -> Reply:
    """A frame whose prelude claims 1 GiB, followed by endless bytes until the client hangs up."""
    prelude = struct.pack(">II", 1 << 30, 0)
    head = prelude + struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    return Reply(chunks=(head,), content_type=EVENT_STREAM, endless=b"\0" * 65536)


def split_frames(reply: Reply, size: int) -> Reply:
    """The same bytes re-cut into ``size``-byte chunks, so frames straddle network reads."""
    data = b"".join(reply.chunks)
    chunks = tuple(data[i : i + size] for i in range(0, len(data), size))
    return Reply(
        status=reply.status,
        chunks=chunks,
        headers=reply.headers,
        content_type=reply.content_type,
        stall=reply.stall,
    )


def signature_problem(req: RecordedRequest, access_key: str, secret_key: str, region: str) -> str:
    """Why ``req`` is not correctly SigV4-signed for Bedrock, or "" when it is."""
    match = _AUTH.match(req.header("Authorization"))
    if match is None:
        return "missing or malformed Authorization header"
    if (match["key"], match["region"], match["service"]) != (access_key, region, "bedrock"):
        return "wrong credential scope"
    amz_date = req.header("X-Amz-Date")
    if not amz_date.startswith(match["date"]):
        return "X-Amz-Date does not match the credential date"
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    # Rebuild the request exactly as received and let botocore compute what the signature must be.
    headers = {name: req.header(name) for name in signed if name != "host"}
    url = f"http://{req.header('Host')}{req.raw_path}"
    rebuilt = AWSRequest(method=req.method, url=url, data=req.body, headers=headers)
    rebuilt.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key), "bedrock", region)
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    return "" if expected == match["signature"] else "signature mismatch"


class FakeBedrock(ScriptedServer):
    """``POST /model/{id}/converse-stream`` plays the script; ``GET /foundation-models`` lists models."""

    def __init__(self, access_key: str = ACCESS_KEY_ID, secret_key: str = SECRET_ACCESS_KEY) -> None:
        super().__init__(lambda _req: text(["Hello", " from", " Bedrock"]), gate=self._gate_request)
        self.access_key, self.secret_key = access_key, secret_key
        self.bearer_token = ""  # set to accept Bedrock API keys instead of SigV4

    def _gate_request(self, req: RecordedRequest) -> Reply | None:
        if self.bearer_token and req.header("Authorization") == f"Bearer {self.bearer_token}":
            problem = ""
        else:
            problem = signature_problem(req, self.access_key, self.secret_key, REGION)
        if problem:
            return http_error(403, "InvalidSignatureException", f"The request signature is invalid: {problem}")
        model = unquote(req.raw_path.split("/")[2]) if req.path.startswith("/model/") else ""
        if model and model not in MODELS:
            return http_error(400, "ValidationException", "The provided model identifier is invalid.")
        if req.method == "GET" and req.path == "/foundation-models":
            models = {"modelSummaries": [{"modelId": m} for m in MODELS]}
            return Reply(content_type="application/json", chunks=(json.dumps(models).encode(),))
        return None
