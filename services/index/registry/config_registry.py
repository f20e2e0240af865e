"""Plugin configuration and the services inside it: reads, writes and license gates.

Every write is a read-modify-write of the whole document inside the configuration lock, so a
service edit and a concurrent admin save never lose each other's changes or tear the active row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from services.common.identity import Identity
from services.common.licensing import License
from services.index.registry import plugin_config, services_config
from services.index.registry.callers import is_system, require_config_admin, require_services_view, require_system
from services.index.registry.config_feed import ConfigFeed
from services.index.registry.config_store import ConfigRevision, ConfigStore
from services.index.registry.store import AgentStore

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
Mutation = Callable[[JSON], JSON]


class ConfigRegistry:
    """The plugin configuration and its services as callers read and change them."""

    def __init__(self, store: ConfigStore, feed: ConfigFeed, agents: AgentStore, known_keys: set[str]) -> None:
        self.store = store
        self.feed = feed
        self.agents = agents
        # Top-level keys the API models; other keys of a stored document survive saves.
        self.known_keys = known_keys

    @property
    def license(self) -> License:
        """The cluster's license as the feed last heard it (Mattermost's, or the override)."""
        return self.feed.license

    async def seed(self, seed_file: str) -> None:
        """Insert the seed document on first start (under the lock, so replicas seed once)."""
        if not seed_file:
            return
        raw = json.loads(await asyncio.to_thread(Path(seed_file).read_text))
        # The plugin stored {"config": {...}} in Mattermost's settings; accept both shapes.
        document = raw.get("config", raw) if isinstance(raw, dict) else {}
        async with self.store.locked() as tx:
            if await tx.active() is not None:
                return
            revision = await tx.write(plugin_config.normalise_config(document))
        logger.info("plugin configuration seeded", extra={"revision": revision})
        await self.feed.refresh()

    async def active(self) -> ConfigRevision:
        """The active revision read from the database (reads that must see every committed write)."""
        return await self.store.active() or ConfigRevision("", plugin_config.normalise_config({}), 0)

    async def live(self) -> ConfigRevision:
        """The active revision as this process last heard it: no database round trip.

        Kept current by the feed (NOTIFY from every replica; this replica's own writes before they
        return), so it lags a write on another replica by the notification's delivery only. While
        the feed cannot hear changes, the database is read instead.
        """
        current = self.feed.current
        if not self.feed.hearing:
            return await self.active()
        return current if current.revision else ConfigRevision("", plugin_config.normalise_config({}), 0)

    async def get_config(self, caller: Identity) -> ConfigRevision:
        """The document; secrets in clear only for the system itself, masked for admins."""
        active = await self.active()
        if is_system(caller):
            return active
        require_config_admin(caller)
        return ConfigRevision(active.revision, plugin_config.mask_config(active.config), active.create_at)

    def visible(self, caller: Identity, revision: ConfigRevision) -> ConfigRevision:
        """A revision from the feed as ``caller`` may see it (watchers)."""
        if is_system(caller):
            return revision
        require_config_admin(caller)
        return ConfigRevision(revision.revision, plugin_config.mask_config(revision.config), revision.create_at)

    async def update_config(self, caller: Identity, incoming: JSON) -> str:
        """Save a new configuration (system admins); the new revision's id."""
        require_config_admin(caller)

        def replace(stored: JSON) -> JSON:
            merged = plugin_config.keep_unknown_keys(incoming, stored, self.known_keys)
            return plugin_config.resolve_config_secrets(merged, stored)

        return await self._mutate(replace, gate_license=True)

    async def _mutate(self, mutation: Mutation, *, gate_license: bool = False) -> str:
        async with self.store.locked() as tx:
            active = await tx.active()
            stored = active.config if active else {}
            document = plugin_config.normalise_config(mutation(stored))
            plugin_config.validate_config(document)
            if gate_license:
                # Only admin saves are gated: a service edit must not fail over a seeded setting.
                plugin_config.check_license(document, self.license)
            await self._check_services_in_use(stored, document)
            revision = await tx.write(document)
        await self.feed.refresh()
        return revision

    async def _check_services_in_use(self, before: JSON, after: JSON) -> None:
        remaining = {s["id"] for s in after.get("services") or []}
        for service in before.get("services") or []:
            if service.get("id") not in remaining:
                await self._refuse_if_used(service["id"])

    async def _refuse_if_used(self, service_id: str) -> None:
        users = await self.agents.usernames_using_service(service_id)
        if users:
            raise FailedPrecondition(f"service {service_id} is still used by agents: {', '.join(sorted(users))}")

    # ---- services ---------------------------------------------------------------------------

    async def list_services(self, caller: Identity) -> list[JSON]:
        """Every service, secrets masked (for callers who may manage agents)."""
        require_services_view(caller)
        return [services_config.mask_service(s) for s in (await self.active()).config.get("services") or []]

    async def find_service(self, service_id: str) -> JSON | None:
        """The stored service (secrets in clear), or None; no permission check."""
        return next((s for s in (await self.active()).config.get("services") or [] if s.get("id") == service_id), None)

    async def get_service(self, caller: Identity, service_id: str, *, with_secrets: bool = False) -> JSON:
        """One service, secrets masked unless ``with_secrets`` (the system itself only)."""
        if with_secrets:
            require_system(caller, "service credentials")
        else:
            require_services_view(caller)
        service = await self.find_service(service_id)
        if service is None:
            raise NotFound(f"service {service_id} not found")
        return service if with_secrets else services_config.mask_service(service)

    async def create_service(self, caller: Identity, service: JSON) -> JSON:
        """Add a service (system admins); it comes back with its id, secrets masked."""
        require_config_admin(caller)
        service = services_config.normalise_service(service)
        for key in services_config.SECRET_FIELDS:
            if service.get(key) == services_config.MASK:
                raise InvalidInput(f"{key} is masked: enter the secret", field=key)

        def add(stored: JSON) -> JSON:
            services = list(stored.get("services") or [])
            if any(s.get("id") == service["id"] for s in services):
                raise AlreadyExists(f"service {service['id']} already exists")
            return {**stored, "services": [*services, service]}

        await self._mutate(add)
        return services_config.mask_service(service)

    async def update_service(self, caller: Identity, service: JSON) -> JSON:
        """Replace a service (system admins); masked secrets keep the stored ones."""
        require_config_admin(caller)
        if not service.get("id"):
            raise InvalidInput("service id is required", field="id")
        result: list[JSON] = []

        def replace(stored: JSON) -> JSON:
            services = list(stored.get("services") or [])
            index = next((i for i, s in enumerate(services) if s.get("id") == service["id"]), None)
            if index is None:
                raise NotFound(f"service {service['id']} not found")
            updated = services_config.normalise_service(
                services_config.resolve_masked_secrets(service, services[index])
            )
            services[index] = updated
            result.append(updated)
            return {**stored, "services": services}

        await self._mutate(replace)
        return services_config.mask_service(result[0])

    async def delete_service(self, caller: Identity, service_id: str) -> None:
        """Remove a service (system admins); FailedPrecondition while agents use it."""
        require_config_admin(caller)

        def remove(stored: JSON) -> JSON:
            services = list(stored.get("services") or [])
            kept = [s for s in services if s.get("id") != service_id]
            if len(kept) == len(services):
                raise NotFound(f"service {service_id} not found")
            return {**stored, "services": kept}

        await self._mutate(remove)
