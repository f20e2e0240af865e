"""A local Mattermost + OpenAI stand-in to try the README's walkthrough against (``make sandbox``).

``python -m tests.fakes.sandbox`` starts the fake Mattermost (REST v4 + WebSocket) on
127.0.0.1:8065 and the fake OpenAI-compatible upstream on 127.0.0.1:8081, seeds a small world
(system admin ``admin``, user ``alice``, team ``demo`` with channel ``town-square``, and the
cluster's own account ``agents-cluster``, a system admin bot) and prints its tokens and ids as
``export`` lines to paste into the terminals that run ``make up`` and ``curl``. Ids and tokens
derive from ``--seed``, so the same exports stay valid from one run to the next. The fake upstream
accepts any key and any model and streams its default answer to every request. Ctrl-C stops it.

The state lives in memory only: agents and posts made during one run are gone after a restart,
while the cluster's database keeps its agents; delete them (or ``.data/``) when starting over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal
from dataclasses import dataclass

from tests.fakes.mattermost import FakeMattermost, FakeUser
from tests.fakes.openai import FakeOpenAI

DEFAULT_SEED = "sandbox"
ADMIN_ROLES = "system_user system_admin"


def stable_id(seed: str, name: str) -> str:
    """A Mattermost-shaped id (26 lowercase base32 characters) that depends only on its inputs."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(alphabet[b % 32] for b in digest[:26])


@dataclass(frozen=True)
class SandboxWorld:
    """Who and what the sandbox seeded."""

    admin: FakeUser
    alice: FakeUser
    cluster_account: FakeUser
    team_id: str
    channel_id: str


class Sandbox:
    """Both fakes on fixed (or, with port 0, OS-picked) loopback ports, seeded the same way each run."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        mattermost_port: int = 8065,
        openai_port: int = 8081,
        seed: str = DEFAULT_SEED,
        tokens: int = 30,
        token_delay: float = 0.02,
    ) -> None:
        self.host = host
        self.seed = seed
        self._openai_port = openai_port
        self.mattermost = FakeMattermost(host=host, port=mattermost_port)
        # Empty key and model list: accept whatever credentials and model the admin configures.
        self.openai = FakeOpenAI(api_key="", models=(), default_tokens=tokens, token_delay=token_delay)
        # Seeded before the servers start: what ``exports()`` prints is known without starting.
        self.world = self._seed()

    async def start(self) -> SandboxWorld:
        """Start both fakes."""
        await self.mattermost.__aenter__()
        try:
            await self.openai.start(port=self._openai_port, host=self.host)
        except BaseException:
            await self.mattermost.__aexit__(None, None, None)
            raise
        return self.world

    async def stop(self) -> None:
        """Stop both fakes (closing every WebSocket the gateway holds)."""
        await self.openai.close()
        await self.mattermost.__aexit__(None, None, None)

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _user(self, username: str, roles: str = "system_user", *, is_bot: bool = False) -> FakeUser:
        return self.mattermost.add_user(
            username,
            roles=roles,
            is_bot=is_bot,
            user_id=stable_id(self.seed, f"user/{username}"),
            token=stable_id(self.seed, f"token/{username}"),
        )

    def _seed(self) -> SandboxWorld:
        mm = self.mattermost
        admin = self._user("admin", ADMIN_ROLES)
        alice = self._user("alice")
        # What an operator makes for the cluster: a bot account with the system admin role, so that
        # it may create and manage the agents' bots and read users and channels.
        cluster_account = self._user("agents-cluster", ADMIN_ROLES, is_bot=True)
        team = mm.add_team("demo", "Demo", team_id=stable_id(self.seed, "team/demo"))
        channel = mm.add_channel(
            team.id, "town-square", display_name="Town Square", channel_id=stable_id(self.seed, "channel/town-square")
        )
        for user in (admin, alice):
            mm.add_member(team, user)
            mm.add_member(channel, user)
        return SandboxWorld(admin, alice, cluster_account, team.id, channel.id)

    def exports(self) -> dict[str, str]:
        """The variables the README's walkthrough uses, by name (the URL is the configured one until
        the fake has started, then the one it listens on)."""
        w = self.world
        return {
            "AGENTS_MATTERMOST_URL": self.mattermost.url or f"http://{self.host}:{self.mattermost.port}",
            "AGENTS_MATTERMOST_TOKEN": w.cluster_account.token,
            "ADMIN_TOKEN": w.admin.token,
            "ALICE_TOKEN": w.alice.token,
            "ALICE_ID": w.alice.id,
            "TEAM_ID": w.team_id,
            "CHANNEL_ID": w.channel_id,
        }


def banner(sandbox: Sandbox) -> str:
    """What the sandbox prints once it is up."""
    lines = [
        f"fake Mattermost  {sandbox.mattermost.url}  (users admin, alice; team demo, channel town-square;",
        "                  cluster account agents-cluster)",
        f"fake OpenAI      {sandbox.openai.base_url}  (any apiKey, any model: streams its default answer)",
        "",
        "# paste into the terminals that run `make up` and curl:",
        *(f"export {name}={value}" for name, value in sandbox.exports().items()),
        "",
        "Ctrl-C stops the sandbox. Requests to Mattermost follow:",
    ]
    return "\n".join(lines)


async def _echo_requests(sandbox: Sandbox) -> None:
    """Print each request the fake Mattermost answered, so terminal 1 shows what the cluster does."""
    shown = 0
    while True:
        requests = sandbox.mattermost.requests
        for recorded in requests[shown:]:
            who = sandbox.mattermost.state.users.get(recorded.user_id, {}).get("username", "")
            print(f"mattermost | {recorded.status} {recorded.method} {recorded.path}  {who}".rstrip(), flush=True)
        shown = len(requests)
        await asyncio.sleep(0.2)


async def serve(args: argparse.Namespace) -> None:
    """Run the sandbox until SIGINT or SIGTERM."""
    sandbox = Sandbox(
        host=args.host,
        mattermost_port=args.mattermost_port,
        openai_port=args.openai_port,
        seed=args.seed,
        tokens=args.tokens,
        token_delay=args.token_delay_ms / 1000.0,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        print(banner(sandbox), flush=True)
        echo = asyncio.create_task(_echo_requests(sandbox)) if not args.quiet else None
        await stop.wait()
        if echo is not None:
            echo.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await echo
        print("stopping the sandbox...", flush=True)
    print("sandbox stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mattermost-port", type=int, default=8065, help="0 lets the OS pick")
    parser.add_argument("--openai-port", type=int, default=8081, help="0 lets the OS pick")
    parser.add_argument("--seed", default=DEFAULT_SEED, help="ids and tokens derive from it (stable across runs)")
    parser.add_argument("--tokens", type=int, default=30, help="pieces the default answer streams in")
    parser.add_argument("--token-delay-ms", type=float, default=20.0, help="delay between streamed pieces")
    parser.add_argument("--quiet", action="store_true", help="do not print each Mattermost request")
    try:
        asyncio.run(serve(parser.parse_args(argv)))
    except OSError as err:
        # The usual one: a port already in use (a real Mattermost on 8065, a second sandbox).
        raise SystemExit(f"sandbox failed to start: {err}") from None


if __name__ == "__main__":
    main()
