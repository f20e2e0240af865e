"""A fake Gemini API and Vertex AI speaking the real ``streamGenerateContent?alt=sse`` format.

One server plays both: ``/v1beta/models/{model}:streamGenerateContent`` (API key in
``x-goog-api-key``), ``/v1/projects/.../publishers/google/models/{model}:streamGenerateContent``
(OAuth bearer), the OAuth ``/token`` endpoint a service account's ``token_uri`` points at (it
verifies the RS256 assertion with the key's public half), and the model listings. Script replies
with the builders below; unscripted requests get a short text answer. Every request is recorded.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer

API_KEY = "AIzaFakeGeminiKey-0123456789abcdef"
ACCESS_TOKEN = "ya29.fake-vertex-access-token-0123456789"
SA_EMAIL = "agents@fake-project.iam.gserviceaccount.com"
MODELS = ("gemini-2.5-flash", "gemini-3-pro-preview")


def chunk(data: dict[str, Any]) -> bytes:
    """One SSE event as Google sends it (CRLF-separated, no event name)."""
    return f"data: {json.dumps(data)}\r\n\r\n".encode()


def _candidate(parts: list[dict[str, Any]], finish: str = "", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0, **extra}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate]}


def _usage(prompt: int = 11, output: int = 7, thoughts: int = 0) -> dict[str, Any]:
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return {"usageMetadata": usage}


def text(*pieces: str, finish: str = "STOP") -> Reply:
    """A plain answer in ``len(pieces)`` chunks; the last one carries finishReason and usage."""
    chunks = [chunk(_candidate([{"text": p}])) for p in pieces[:-1]]
    chunks.append(chunk({**_candidate([{"text": pieces[-1]}], finish), **_usage()}))
    return Reply(chunks=tuple(chunks))


def function_call(name: str, args: dict[str, Any], *, signature: str = "", call_id: str = "") -> Reply:
    """A function call (Gemini 3 signs the first call of a step), ended with STOP as Gemini does."""
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if call_id:
        part["functionCall"]["id"] = call_id
    if signature:
        part["thoughtSignature"] = signature
    return Reply(chunks=(chunk({**_candidate([part], "STOP"), **_usage()}),))


def thinking(thought: str, answer: str, *, signature: str = "sig-abc") -> Reply:
    """A thought summary part, then the answer whose part carries the signature."""
    return Reply(
        chunks=(
            chunk(_candidate([{"text": thought, "thought": True}])),
            chunk(
                {
                    **_candidate([{"text": answer, "thoughtSignature": signature}], "STOP"),
                    **_usage(thoughts=30),
                }
            ),
        )
    )


def grounded(answer: str, sources: list[tuple[str, str]], supports: list[tuple[str, list[int]]]) -> Reply:
    """An answer with Google Search grounding: ``supports`` are (cited segment, source indices)."""
    encoded = answer.encode("utf-8")
    grounding_supports = []
    for segment, indices in supports:
        start = encoded.index(segment.encode("utf-8"))  # Gemini counts bytes
        grounding_supports.append(
            {
                "segment": {"startIndex": start, "endIndex": start + len(segment.encode()), "text": segment},
                "groundingChunkIndices": indices,
            }
        )
    metadata = {
        "webSearchQueries": ["query"],
        "groundingChunks": [{"web": {"uri": uri, "title": title}} for uri, title in sources],
        "groundingSupports": grounding_supports,
    }
    return Reply(
        chunks=(
            chunk(_candidate([{"text": answer}])),
            chunk({**_candidate([], "STOP", groundingMetadata=metadata), **_usage()}),
        )
    )


def http_error(status: int, message: str, *, google_status: str = "", retry_after: str = "") -> Reply:
    """A refused request with Google's JSON error body."""
    body = {"error": {"code": status, "message": message, "status": google_status or "UNAVAILABLE"}}
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Reply(status=status, chunks=(json.dumps(body).encode(),), headers=headers)


def error_mid_stream(first: str) -> Reply:
    """Some text, then an error object in the stream and the end of the body."""
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    return Reply(chunks=(chunk(_candidate([{"text": first}])), chunk(error)))


def stall(first: str = "") -> Reply:
    """Optionally one text chunk, then silence until the client leaves."""
    chunks = (chunk(_candidate([{"text": first}])),) if first else ()
    return Reply(chunks=chunks, stall=True)


def service_account_json(token_uri: str) -> tuple[str, rsa.RSAPrivateKey]:
    """A fresh service-account key JSON whose ``token_uri`` points at the fake."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": SA_EMAIL,
        "token_uri": token_uri,
    }
    return json.dumps(info), key


class FakeGoogle(ScriptedServer):
    """Gemini + Vertex + OAuth token endpoint on one loopback server."""

    def __init__(self) -> None:
        super().__init__(lambda _req: text("Hello", " from", " fake Gemini"), gate=self._gate_request)
        self.public_key: Any = None  # set by tests that exercise the service-account exchange
        self.token_requests = 0

    def _gate_request(self, request: RecordedRequest) -> Reply | None:
        if request.path == "/token":
            return self._token(request)
        if request.path.startswith("/computeMetadata/"):
            if request.header("Metadata-Flavor") != "Google":
                return Reply(status=403, chunks=(b"Missing Metadata-Flavor header",))
            body = {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")
        if request.path.startswith("/v1beta/"):
            if request.header("x-goog-api-key") != API_KEY:
                return http_error(403, "API key not valid.", google_status="PERMISSION_DENIED")
            if request.path == "/v1beta/models":
                models = [{"name": f"models/{m}", "supportedGenerationMethods": ["generateContent"]} for m in MODELS]
                models.append({"name": "models/embedding-001", "supportedGenerationMethods": ["embedContent"]})
                return Reply(chunks=(json.dumps({"models": models}).encode(),), content_type="application/json")
            return None
        if request.header("authorization") != f"Bearer {ACCESS_TOKEN}":
            return http_error(401, "Request had invalid authentication credentials.", google_status="UNAUTHENTICATED")
        if request.path == "/v1beta1/publishers/google/models":
            models = [{"name": f"publishers/google/models/{m}"} for m in MODELS]
            return Reply(chunks=(json.dumps({"publisherModels": models}).encode(),), content_type="application/json")
        return None

    def _token(self, request: RecordedRequest) -> Reply:
        self.token_requests += 1
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        try:
            claims = jwt.decode(
                form.get("assertion", ""), self.public_key, algorithms=["RS256"], audience=f"{self.url}/token"
            )
        except jwt.PyJWTError:
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return Reply(status=400, chunks=(json.dumps(body).encode(),))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or claims["iss"] != SA_EMAIL:
            return Reply(status=400, chunks=(b'{"error": "invalid_grant"}',))
        body = {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
        return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")
