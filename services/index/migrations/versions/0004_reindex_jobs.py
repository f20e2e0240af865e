"""Reindex jobs: status, progress, the saved cursor and the lease of the worker running it;
``since_at`` is set on catch-up jobs, which only read posts created after it.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS index_reindex_jobs (
            id VARCHAR(32) PRIMARY KEY,
            status TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT '',
            started_at BIGINT NOT NULL,
            completed_at BIGINT NOT NULL DEFAULT 0,
            processed_rows BIGINT NOT NULL DEFAULT 0,
            total_rows BIGINT NOT NULL DEFAULT 0,
            error_count INT NOT NULL DEFAULT 0,
            node_id TEXT NOT NULL DEFAULT '',
            cutoff_at BIGINT NOT NULL,
            last_updated_at BIGINT NOT NULL,
            lease_until BIGINT NOT NULL DEFAULT 0,
            cursor_channel TEXT NOT NULL DEFAULT '',
            cursor_before TEXT NOT NULL DEFAULT '',
            since_at BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS idx_index_reindex_jobs_started ON index_reindex_jobs (started_at DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS index_reindex_jobs")
