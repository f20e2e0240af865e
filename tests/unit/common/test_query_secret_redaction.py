"""Query-string secrets are redacted from log lines and exported spans, wherever they sit."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from services.common.telemetry import JsonFormatter, RedactingSpanExporter, redact_query_secrets

SECRET = "s3cr3t-Value"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ai_bots?access_token=s3cr3t-Value", "/ai_bots?access_token=REDACTED"),
        ("http://h/p?page=2&Access_Token=s3cr3t-Value&q=x", "http://h/p?page=2&Access_Token=REDACTED&q=x"),
        ("code=s3cr3t-Value&state=s3cr3t-Value", "code=REDACTED&state=REDACTED"),  # a bare url.query
        ("https://app/cb#id_token=s3cr3t-Value", "https://app/cb#id_token=REDACTED"),  # an OAuth fragment
        (
            "/s?X-Amz-Signature=s3cr3t-Value&AWSAccessKeyId=s3cr3t-Value",
            "/s?X-Amz-Signature=REDACTED&AWSAccessKeyId=REDACTED",
        ),
        ("/s?client%5Fsecret=s3cr3t-Value", "/s?client%5Fsecret=REDACTED"),  # a percent-encoded name
        ("/p?next=/cb?api_key=s3cr3t-Value", "/p?next=/cb?api_key=REDACTED"),  # nested in a harmless value
        ("failed: URL('https://x/v1?key=s3cr3t-Value')", "failed: URL('https://x/v1?key=REDACTED')"),
        ("/p?page=2&per_page=60&q=status=open", "/p?page=2&per_page=60&q=status=open"),  # nothing secret
    ],
)
def test_secret_query_values_are_redacted_and_the_rest_is_kept(text: str, expected: str) -> None:
    assert redact_query_secrets(text) == expected


def test_a_log_line_redacts_the_message_its_extras_and_its_traceback() -> None:
    try:
        raise RuntimeError(f"GET https://mm/api/v4/users/me?access_token={SECRET} failed")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "calling %s", (f"https://x/?key={SECRET}",), exc_info)
    record.url = f"https://x/?password={SECRET}"
    line = JsonFormatter("gateway").format(record)
    assert SECRET not in line
    entry = json.loads(line)
    assert entry["msg"] == "calling https://x/?key=REDACTED"
    assert entry["url"] == "https://x/?password=REDACTED"
    assert "access_token=REDACTED" in entry["exc"]


def test_an_exported_span_redacts_attributes_events_and_status_and_keeps_clean_spans_as_they_are() -> None:
    inner = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(inner)))
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("GET", attributes={"http.url": f"http://p/v1?key={SECRET}"}) as span:
        span.record_exception(RuntimeError(f"http://p/v1?key={SECRET} refused"))
        span.set_status(Status(StatusCode.ERROR, f"http://p/v1?key={SECRET} refused"))
    with tracer.start_as_current_span("clean", attributes={"http.target": "/ai_bots?page=2"}):
        pass
    leaky, clean = inner.get_finished_spans()
    assert leaky.attributes["http.url"] == "http://p/v1?key=REDACTED"
    assert SECRET not in json.dumps([dict(e.attributes) for e in leaky.events])
    assert leaky.status.description == "http://p/v1?key=REDACTED refused"
    assert clean.attributes["http.target"] == "/ai_bots?page=2"
