"""``make bench``: run every benchmark (or those named: ``python -m bench ai_bots llm_stream``);
the memory soak runs only when named (``python -m bench soak``): it takes 10 minutes or more."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "ai_bots",
    "conversation_latency",
    "conversations_scale",
    "embeddings",
    "llm_stream",
    "mcp_server",
    "reindex",
    "scale_out",
    "semantic_search",
]
ON_REQUEST = ["soak"]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    known = BENCHMARKS + ON_REQUEST
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    for name in names:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
