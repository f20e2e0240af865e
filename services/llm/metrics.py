"""The llm service's Prometheus metrics (namespace ``agents``), on a registry of its own.

``agents_llm_requests_total{provider, model, outcome}``: one per completion, ``outcome`` being
``success`` or the error class (caller/policy/provider/internal). ``agents_llm_overhead_seconds
{operation}``: time spent in our code per completion (total minus waiting on the provider; see
``overhead.py``). Token counters follow the plugin's names, labelled by ``bot_name`` (an agent, a
set admins configure) but not by the plugin's ``team_id``: an id from data, whose series would grow
without bound. Tokens per team are in the token-usage log (``usage_log.py``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Overhead is meant to be well under a millisecond: buckets resolve 100 µs … 1 s.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class LlmMetrics:
    """Every metric the llm service exports; ``registry`` is what the metrics endpoint serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "agents_llm_requests",
            "LLM completions by provider, model and outcome (success or the error class).",
            ["provider", "model", "outcome"],
            registry=self.registry,
        )
        self.overhead = Histogram(
            "agents_llm_overhead_seconds",
            "Seconds a completion spent in our code: total time minus time waiting on the provider.",
            ["operation"],
            buckets=OVERHEAD_BUCKETS,
            registry=self.registry,
        )
        self.input_tokens = Counter(
            "agents_llm_input_tokens",
            "Input tokens used, by agent.",
            ["bot_name"],
            registry=self.registry,
        )
        self.output_tokens = Counter(
            "agents_llm_output_tokens",
            "Output tokens generated, by agent.",
            ["bot_name"],
            registry=self.registry,
        )

    def observe(
        self,
        *,
        provider: str,
        model: str,
        operation: str,
        outcome: str,
        overhead_seconds: float,
        bot_name: str,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """Record one finished completion."""
        self.requests.labels(provider, model, outcome).inc()
        self.overhead.labels(operation).observe(overhead_seconds)
        if input_tokens:
            self.input_tokens.labels(bot_name).inc(input_tokens)
        if output_tokens:
            self.output_tokens.labels(bot_name).inc(output_tokens)
