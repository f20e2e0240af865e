"""Peers for the llm_stream benchmark, run from ``.tools/`` (git-ignored), each optional.

LiteLLM's proxy lives in its own virtualenv (``.tools/litellm-venv``: ``pip install
'litellm[proxy]'``), started offline (local cost map, no telemetry, a random master key).
Portkey's gateway is the npm package (``@portkey-ai/gateway@1.15.2`` with ``@hono/node-server@1.14.1``
under ``.tools/portkey``), started with node. A peer whose install is missing is skipped with a
line saying so; ``BENCH_LLM_INSTALL_PEERS=1`` installs them first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

TOOLS = Path(__file__).resolve().parent.parent / ".tools"
LITELLM_VENV = TOOLS / "litellm-venv"  # its own subfolder: .tools/ also holds buf's node_modules
LITELLM_VERSION = "1.108.7"  # seen working offline here; pinned so runs compare like with like
PORTKEY_DIR = TOOLS / "portkey"  # its own package.json, apart from .tools/package.json
PORTKEY_SERVER = PORTKEY_DIR / "node_modules/@portkey-ai/gateway/build/start-server.js"


@dataclass
class Peer:
    name: str
    process: asyncio.subprocess.Process
    base_url: str
    headers: dict[str, str]
    note: str = ""

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def install_peers() -> None:
    """Install both peers under .tools/ (slow; only when asked)."""
    TOOLS.mkdir(exist_ok=True)
    if not (LITELLM_VENV / "bin/litellm").exists():
        subprocess.run(["python3", "-m", "venv", str(LITELLM_VENV)], check=False)
        litellm = f"litellm[proxy]=={LITELLM_VERSION}"
        subprocess.run([str(LITELLM_VENV / "bin/pip"), "install", "-q", litellm], check=False)
    if not PORTKEY_SERVER.exists():
        PORTKEY_DIR.mkdir(exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=PORTKEY_DIR, check=False, capture_output=True)
        subprocess.run(
            ["npm", "install", "--silent", "@portkey-ai/gateway@1.15.2", "@hono/node-server@1.14.1"],
            cwd=PORTKEY_DIR,
            check=False,
        )
    _drop_nested_hono()


def _drop_nested_hono() -> None:
    """The gateway package ships its own newer ``@hono/node-server``, whose streaming fails on this
    Node with ``TypeError: immutable``; removing it makes node resolve the pinned 1.14.1."""
    nested = PORTKEY_DIR / "node_modules/@portkey-ai/gateway/node_modules/@hono/node-server"
    if nested.exists():
        shutil.rmtree(nested, ignore_errors=True)


async def _wait_http(url: str, process: asyncio.subprocess.Process, within: float = 90.0) -> bool:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                return False
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status < 500:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.25)
    return False


async def start_litellm(fake_base_url: str, port: int, work: Path) -> Peer | str:
    """LiteLLM proxy on ``port`` routing model ``gpt-4o`` to the fake, or why it cannot run."""
    binary = LITELLM_VENV / "bin/litellm"
    if not binary.exists():
        return f"LiteLLM skipped: {binary} not installed (pip install 'litellm[proxy]' into {LITELLM_VENV})"
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {fake_base_url}\n"
        "      api_key: sk-bench-dummy\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    key = "sk-" + secrets.token_hex(16)
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOG": "ERROR",
    }
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    if not await _wait_http(f"{base}/health/liveliness", process):
        await Peer("litellm", process, base, {}).stop()
        return "LiteLLM skipped: the proxy did not become ready"
    return Peer("LiteLLM proxy", process, f"{base}/v1", {"Authorization": f"Bearer {key}"})


async def start_portkey(fake_base_url: str, port: int) -> Peer | str:
    """Portkey's gateway on ``port``, told per request to use the fake as a custom OpenAI host."""
    if not PORTKEY_SERVER.exists():
        return f"Portkey skipped: {PORTKEY_SERVER} not installed (npm install under {PORTKEY_DIR})"
    _drop_nested_hono()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PORTKEY_SERVER),
        f"--port={port}",
        cwd=PORTKEY_DIR,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    if not await _wait_http(f"{base}/", process):
        await Peer("portkey", process, base, {}).stop()
        return "Portkey skipped: the gateway did not become ready"
    headers = {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": fake_base_url,
        "Authorization": "Bearer sk-bench-dummy",
    }
    note = "Portkey's stream handler waits ~25 ms before the first chunk by design"
    return Peer("Portkey gateway", process, f"{base}/v1", headers, note)
