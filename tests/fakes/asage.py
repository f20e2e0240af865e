"""A fake Ask Sage server API: ``POST /server/query`` and ``/server/get-models`` as JSON.

Ask Sage does not stream: a query answers one JSON document with the completion in ``message``.
Requests must carry the key in ``x-access-tokens``; every request is recorded.
"""

from __future__ import annotations

import json

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer

API_KEY = "asksage-fake-static-key-0123456789"


def answer(message: str) -> Reply:
    body = {"message": message, "response": "OK", "status": 200, "uuid": "u-1", "references": ""}
    return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")


def http_error(status: int, message: str, retry_after: str = "") -> Reply:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Reply(status=status, chunks=(json.dumps({"message": message}).encode(),), headers=headers)


def error_in_body(message: str) -> Reply:
    """A 200 whose body reports a failure, as Ask Sage does for some bad requests."""
    body = {"response": message, "status": 400}
    return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")


def stall() -> Reply:
    """Headers sent, body never finished."""
    return Reply(chunks=(b'{"message": "',), content_type="application/json", stall=True)


class FakeAskSage(ScriptedServer):
    def __init__(self) -> None:
        super().__init__(lambda _req: answer("Ask Sage answer"), gate=self._check_auth)

    def _check_auth(self, request: RecordedRequest) -> Reply | None:
        if request.header("x-access-tokens") != API_KEY:
            return http_error(401, "Invalid token")
        if request.path.endswith("/get-models"):
            body = {
                "object": "list",
                "data": [{"id": "gpt-4o", "name": "GPT-4o"}, {"id": "claude-35-sonnet"}],
            }
            return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")
        return None
