"""The caller identity and deadline of the current call, carried across services in metadata.

A server interceptor sets these context variables for every incoming call; the client interceptor
copies them onto every outgoing call, so a chain gateway → llm → tools keeps the user and the
remaining time budget without any handler passing them by hand.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass

USER_ID_KEY = "x-agents-user-id"
PERMISSIONS_KEY = "x-agents-permissions"
SERVICE_TOKEN_KEY = "x-agents-service-token"

MANAGE_SYSTEM = "manage_system"
MANAGE_OWN_AGENT = "manage_own_agent"
MANAGE_OTHERS_AGENT = "manage_others_agent"


@dataclass(frozen=True)
class Identity:
    """Who a call runs for. ``user_id`` is empty for calls the system makes on its own."""

    user_id: str = ""
    permissions: frozenset[str] = frozenset()
    # True when the caller presented the cluster's service credential (an internal service).
    internal: bool = False

    @property
    def is_system_admin(self) -> bool:
        """Whether the caller holds Mattermost's manage_system permission, which implies every other."""
        return MANAGE_SYSTEM in self.permissions

    def has(self, permission: str) -> bool:
        """Whether the caller holds ``permission``, or is a system admin."""
        return permission in self.permissions or self.is_system_admin

    def to_metadata(self) -> list[tuple[str, str]]:
        """The gRPC metadata that carries this identity to the next service."""
        md = [(USER_ID_KEY, self.user_id)] if self.user_id else []
        if self.permissions:
            md.append((PERMISSIONS_KEY, ",".join(sorted(self.permissions))))
        return md

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], *, internal: bool) -> Identity:
        """The identity an incoming call's metadata carries; ``internal`` when it presented the credential."""
        perms = metadata.get(PERMISSIONS_KEY, "")
        return cls(
            user_id=metadata.get(USER_ID_KEY, ""),
            permissions=frozenset(p.strip() for p in perms.split(",") if p.strip()),
            internal=internal,
        )


SYSTEM = Identity(internal=True)

current_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("agents_identity", default=SYSTEM)
# Absolute deadline (time.monotonic()) of the call being served; None when the caller set none.
current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("agents_deadline", default=None)


def identity() -> Identity:
    """Who the current call runs for (``SYSTEM`` outside any call)."""
    return current_identity.get()


def remaining_seconds() -> float | None:
    """Time left before the incoming call's deadline, or None without one."""
    deadline = current_deadline.get()
    return None if deadline is None else deadline - time.monotonic()
