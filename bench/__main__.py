"""``make bench``: run every benchmark (or those named: ``python -m bench ai_bots llm``)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "ai_bots",
    "conversation_latency",
    "embeddings",
    "llm_stream",
    "mcp_server",
    "scale_out",
    "semantic_search",
]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
