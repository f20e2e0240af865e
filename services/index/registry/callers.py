"""Who may do what in the registry, decided from the caller's Identity.

Every call from a cluster service carries the service credential (``internal``); the gateway's
calls also carry the Mattermost user they run for. A call with the credential and *no* user is
the system itself (the llm service loading credentials, a watcher at start-up).
"""

from __future__ import annotations

from services.common.errors import PermissionDenied
from services.common.identity import MANAGE_OTHERS_AGENT, MANAGE_OWN_AGENT, Identity


def is_system(caller: Identity) -> bool:
    """An internal service acting on its own (not on behalf of a user)."""
    return caller.internal and not caller.user_id


def require_system(caller: Identity, what: str) -> None:
    """Raise PermissionDenied naming ``what`` unless the system itself calls."""
    if not is_system(caller):
        raise PermissionDenied(f"{what} is only available to internal services")


def require_config_admin(caller: Identity) -> None:
    """System admins (or the system itself) change services and the plugin configuration."""
    if not (caller.is_system_admin or is_system(caller)):
        raise PermissionDenied("only system admins may change the plugin configuration")


def may_see_services(caller: Identity) -> bool:
    """The plugin's services permission: anyone who may create or manage agents."""
    return is_system(caller) or caller.has(MANAGE_OWN_AGENT) or caller.has(MANAGE_OTHERS_AGENT)


def require_services_view(caller: Identity) -> None:
    """Raise PermissionDenied unless the caller may see services."""
    if not may_see_services(caller):
        raise PermissionDenied("you do not have permission to manage agents")
