"""Reindex partitions: a job's channels split by a hash of their id into ``partitions`` parts, each
with its own cursor and the lease of the worker reading it (the job keeps its totals and a lease
renewed by every partition's progress).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE index_reindex_jobs ADD COLUMN IF NOT EXISTS partitions INT NOT NULL DEFAULT 1;
        CREATE TABLE IF NOT EXISTS index_reindex_partitions (
            job_id VARCHAR(32) NOT NULL REFERENCES index_reindex_jobs (id) ON DELETE CASCADE,
            part INT NOT NULL,
            done BOOLEAN NOT NULL DEFAULT false,
            node_id TEXT NOT NULL DEFAULT '',
            lease_until BIGINT NOT NULL DEFAULT 0,
            cursor_channel TEXT NOT NULL DEFAULT '',
            cursor_before TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (job_id, part)
        );
        INSERT INTO index_reindex_partitions (job_id, part, done, cursor_channel, cursor_before)
            SELECT id, 0, status = 'completed', cursor_channel, cursor_before FROM index_reindex_jobs
            ON CONFLICT DO NOTHING;
        ALTER TABLE index_reindex_jobs DROP COLUMN cursor_channel, DROP COLUMN cursor_before;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE index_reindex_jobs ADD COLUMN cursor_channel TEXT NOT NULL DEFAULT '',
            ADD COLUMN cursor_before TEXT NOT NULL DEFAULT '';
        DROP TABLE IF EXISTS index_reindex_partitions;
        ALTER TABLE index_reindex_jobs DROP COLUMN IF EXISTS partitions;
        """
    )
