"""The plugin-wide configuration document: normalisation, validation, license gates and secrets.

The document keeps the plugin's JSON shape (a dict), so keys this project does not know yet survive
a save; the gRPC layer converts it to and from ``agents.registry.v1.PluginConfig``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from services.common.errors import InvalidInput
from services.common.licensing import Feature, License, require
from services.index.registry import services_config
from services.index.registry.services_config import MASK

JSON = dict[str, Any]

MAX_SERVICES = 200
MAX_MCP_URL_LENGTH = 2048


def normalise_config(config: Mapping[str, Any]) -> JSON:
    """What the plugin's admin API does on every read and write: MCP and the embedded server are
    always on, services get ids and their forced Responses API flag."""
    out = copy.deepcopy(dict(config))
    out["services"] = [services_config.normalise_service(s) for s in out.get("services") or [] if isinstance(s, dict)]
    mcp: JSON = out["mcp"] if isinstance(out.get("mcp"), dict) else {}
    mcp["enabled"] = True
    embedded: JSON = mcp["embeddedServer"] if isinstance(mcp.get("embeddedServer"), dict) else {}
    embedded["enabled"] = True
    mcp["embeddedServer"] = embedded
    out["mcp"] = mcp
    return out


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise InvalidInput naming the bad field."""
    services = config.get("services") or []
    if len(services) > MAX_SERVICES:
        raise InvalidInput(f"at most {MAX_SERVICES} services", field="services")
    seen: set[str] = set()
    for service in services:
        services_config.validate_service(service)
        if service["id"] in seen:
            raise InvalidInput(f"duplicate service id {service['id']}", field="services.id")
        seen.add(service["id"])
    _validate_fallbacks(services)
    if str(config.get("telemetryOutput") or "off") not in ("off", "logs", "otlp"):
        raise InvalidInput("telemetryOutput must be off, logs or otlp", field="telemetryOutput")
    _validate_mcp_servers((config.get("mcp") or {}).get("servers") or [])


def _validate_mcp_servers(servers: list[Any]) -> None:
    """Names are unique, URLs absolute http(s), and no header can split a request (CR/LF)."""
    seen: set[str] = set()
    for server in servers:
        if not isinstance(server, dict):
            raise InvalidInput("every MCP server must be an object", field="mcp.servers")
        name = str(server.get("name") or "").strip()
        if not name or name in seen:
            raise InvalidInput(f"MCP server names must be set and unique ({name!r})", field="mcp.servers.name")
        seen.add(name)
        url = str(server.get("baseURL") or "")
        if not url.lower().startswith(("https://", "http://")) or len(url) > MAX_MCP_URL_LENGTH:
            raise InvalidInput(
                f"mcp.servers[{name}].baseURL must be an absolute http(s) URL", field=f"mcp.servers[{name}].baseURL"
            )
        headers = server.get("headers") or {}
        if not isinstance(headers, dict):
            raise InvalidInput("headers must be an object", field=f"mcp.servers[{name}].headers")
        for header, value in headers.items():
            if any(c in f"{header}{value}" for c in "\r\n\0"):
                # A line break in a header would let the value inject headers or split the request.
                field = f"mcp.servers[{name}].headers.{header.strip()}"
                raise InvalidInput(f"{field} must not contain CR, LF or NUL", field=field)


def _validate_fallbacks(services: list[JSON]) -> None:
    """Every fallback names a service, and no chain leads back to a service already in it."""
    fallbacks = {s["id"]: s.get("fallbackServiceID") or "" for s in services}
    for fallback in fallbacks.values():
        if fallback and fallback not in fallbacks:
            raise InvalidInput(f"fallbackServiceID {fallback} names no service", field="fallbackServiceID")
    for start in fallbacks:
        chain = [start]
        while nxt := fallbacks[chain[-1]]:
            if nxt in chain:
                cycle = " -> ".join([*chain, nxt])
                raise InvalidInput(f"fallbackServiceID forms a cycle: {cycle}", field="fallbackServiceID")
            chain.append(nxt)


def check_license(config: Mapping[str, Any], license: License) -> None:
    """Raise PermissionDenied naming the first feature the document turns on without a license."""
    search = config.get("embeddingSearchConfig") or {}
    if isinstance(search, dict) and search.get("type"):
        require(license, Feature.EMBEDDING_SEARCH)
    mcp = config.get("mcp") or {}
    if any(isinstance(s, dict) and s.get("enabled") for s in mcp.get("servers") or []) or mcp.get("enablePluginServer"):
        require(license, Feature.MCP)
    if config.get("enableTokenUsageLogging"):
        require(license, Feature.TOKEN_TRACKING)


def search_enabled(config: Mapping[str, Any], license: License) -> bool:
    """Semantic search is configured and licensed."""
    search = config.get("embeddingSearchConfig") or {}
    return bool(isinstance(search, dict) and search.get("type")) and license >= License.ENTRY


# ---- secrets outside services: (path to a list or object, key that identifies an item, secret key)


def _other_secrets(config: JSON) -> Iterator[tuple[str, JSON, str]]:
    """(identity, container, secret key) for every non-service secret in the document."""
    web = config.get("webSearch")
    if isinstance(web, dict):
        for provider in ("google", "brave"):
            if isinstance(web.get(provider), dict):
                yield f"webSearch.{provider}", web[provider], "apiKey"
    search = config.get("embeddingSearchConfig")
    if isinstance(search, dict):
        embedding = search.get("embeddingProvider")
        if isinstance(embedding, dict) and isinstance(embedding.get("parameters"), dict):
            yield "embeddingSearchConfig.embeddingProvider", embedding["parameters"], "apiKey"
    mcp = config.get("mcp")
    if isinstance(mcp, dict):
        for server in mcp.get("servers") or []:
            if isinstance(server, dict):
                ident = f"mcp.servers[{server.get('name', '')}]"
                yield ident, server, "clientSecret"
                # Custom headers carry API keys and bearer tokens: every value is a secret.
                headers = server.get("headers")
                if isinstance(headers, dict):
                    for header in headers:
                        yield f"{ident}.headers", headers, header


def _walk(config: JSON, on_service: Callable[[JSON], JSON], on_secret: Callable[[str, JSON, str], None]) -> JSON:
    out = copy.deepcopy(config)
    out["services"] = [on_service(s) for s in out.get("services") or []]
    for ident, container, key in _other_secrets(out):
        on_secret(ident, container, key)
    return out


def mask_config(config: JSON) -> JSON:
    """A copy with every secret masked (service keys, search API keys, OAuth client secrets)."""

    def mask(_: str, container: JSON, key: str) -> None:
        if container.get(key):
            container[key] = MASK

    return _walk(config, services_config.mask_service, mask)


def resolve_config_secrets(incoming: JSON, stored: JSON | None) -> JSON:
    """Masked secrets in a saved document take the stored values (services: only while their
    endpoint is unchanged; MCP servers: only while their base URL is unchanged)."""
    stored = stored or {}
    stored_services = {s.get("id"): s for s in stored.get("services") or [] if isinstance(s, dict)}
    stored_secrets = {(ident, key): container for ident, container, key in _other_secrets(copy.deepcopy(stored))}
    stored_urls, incoming_urls = _mcp_server_urls(stored), _mcp_server_urls(incoming)

    def service(s: JSON) -> JSON:
        return services_config.resolve_masked_secrets(s, stored_services.get(s.get("id")))

    def secret(ident: str, container: JSON, key: str) -> None:
        if container.get(key) != MASK:
            return
        previous = stored_secrets.get((ident, key))
        if previous is None or not previous.get(key):
            raise InvalidInput(f"{ident}.{key} is masked but no secret is stored: enter it again", field=key)
        server = ident.removesuffix(".headers")
        if server.startswith("mcp.servers") and stored_urls.get(server) != incoming_urls.get(server):
            # A secret meant for one server must not be sent to another URL.
            raise InvalidInput(f"{server}.baseURL changed, so {ident}.{key} must be entered again", field=key)
        container[key] = previous[key]

    return _walk(incoming, service, secret)


def _mcp_server_urls(config: JSON) -> dict[str, Any]:
    mcp = config.get("mcp")
    servers = mcp.get("servers") or [] if isinstance(mcp, dict) else []
    return {f"mcp.servers[{s.get('name', '')}]": s.get("baseURL") for s in servers if isinstance(s, dict)}


def keep_unknown_keys(incoming: JSON, stored: JSON | None, known: set[str]) -> JSON:
    """Top-level keys of the stored document that the API does not model survive a save."""
    out = dict(incoming)
    for key, value in (stored or {}).items():
        if key not in known and key not in out:
            out[key] = value
    return out
