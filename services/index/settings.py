"""Settings of the index service (it also hosts the agent registry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from services.common.licensing import License
from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_INDEX_"


class IndexSettings(CommonSettings):
    """``AGENTS_INDEX_*``: the port, the license, the config seed, the registry's caches and search's scan bounds."""

    service_name: str = "index"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    # Empty: the license Mattermost reports, read again every license_refresh_seconds. Otherwise
    # an override (tests, air-gapped installs): none, entry, enterprise, enterprise_advanced.
    license: str = ""
    license_refresh_seconds: float = Field(default=60.0, gt=0)
    # Plugin config JSON seeded into the database on first start (a Helm ConfigMap).
    config_seed_file: str = ""
    db_pool_size: int = Field(default=10, ge=1)
    # Longest time the in-process list of active agents is served without re-reading it. Writes
    # through the registry invalidate it on every replica at once (NOTIFY); this only bounds how
    # long a row changed behind the registry's back (manual SQL) can go unseen. 0 disables it.
    agents_cache_seconds: float = Field(default=5.0, ge=0)
    # Hosts the embedding provider's apiURL may resolve to although they are private (a local
    # embedding server); comma-separated. Public hosts need no entry.
    embedding_private_hostnames: str = ""
    # A search whose permitted channels hold at most this many rows ranks them all (exact and
    # cheap); above it the HNSW index is scanned iteratively.
    search_exact_scan_rows: int = Field(default=10_000, ge=0)
    # How many index tuples an iterative HNSW scan may read before the exact scan takes over.
    search_max_scan_tuples: int = Field(default=100_000, ge=1)
    # hnsw.ef_search of a search's HNSW scan: higher finds more of the true nearest rows, slower.
    search_ef_search: int = Field(default=1000, ge=1, le=1000)
    # A reindex worker that has not renewed its job's lease this long is gone; another takes over.
    reindex_lease_seconds: float = Field(default=30.0, gt=0)
    # Posts read from Mattermost and committed per page of a reindex.
    reindex_page_size: int = Field(default=200, ge=1, le=200)
    # How long a reindex waits out an embedding provider outage before the job fails (resumable).
    reindex_retry_seconds: float = Field(default=60.0, ge=0)
    # Build the HNSW index after a clearing reindex's bulk load instead of inserting into it.
    reindex_defer_hnsw: bool = True
    # Worker processes (and partitions) of a new reindex job; 1 reads it in this process.
    reindex_workers: int = Field(default=1, ge=1, le=64)
    # Where reindex workers run: "local" (processes beside the index service) or "kubernetes" (one
    # Job per run in this pod's namespace: services/index/reindex/kubernetes_jobs.py).
    reindex_backend: Literal["local", "kubernetes"] = "local"
    # kubernetes: the worker pods' template the Helm chart renders (image, environment, account).
    reindex_job_template_file: str = Field(default="", validate_default=True)
    # kubernetes: the API server; empty means in-cluster (KUBERNETES_SERVICE_HOST and the account's CA).
    reindex_kubernetes_api_url: str = ""
    # kubernetes: the pod's service account (its token, CA and namespace files).
    reindex_service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"

    @field_validator("reindex_job_template_file")
    @classmethod
    def _template_for_kubernetes(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("reindex_backend") == "kubernetes" and not value:
            raise ValueError("required when AGENTS_INDEX_REINDEX_BACKEND is kubernetes")
        return value

    @field_validator("license")
    @classmethod
    def _known_license(cls, value: str) -> str:
        if value.strip():
            License.parse(value)  # ValueError names the accepted values
        return value


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> IndexSettings:
    """The index service's settings from ``AGENTS_INDEX_*`` (and shared ``AGENTS_*``) variables."""
    return load_settings(IndexSettings, PREFIX, environ, **fixed)
