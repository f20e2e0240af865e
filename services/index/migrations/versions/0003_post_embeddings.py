"""Post embeddings and the embedding space they were computed in.

The vector column has no fixed dimensions: the HNSW index is an expression index on
``embedding::vector(N)`` that the service builds for the recorded space (N is the configured
dimensions), so a model change is a reindex, never a schema migration. The space row is what keeps
vectors of different models from being mixed: rows are only written and searched while the
configured model matches it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS index_post_chunks (
            post_id VARCHAR(26) NOT NULL,
            chunk_index INT NOT NULL,
            total_chunks INT NOT NULL,
            channel_id VARCHAR(26) NOT NULL,
            team_id VARCHAR(26) NOT NULL DEFAULT '',
            user_id VARCHAR(26) NOT NULL,
            create_at BIGINT NOT NULL,
            content TEXT NOT NULL,
            embedding vector NOT NULL,
            PRIMARY KEY (post_id, chunk_index)
        );
        CREATE INDEX IF NOT EXISTS idx_index_post_chunks_channel ON index_post_chunks (channel_id);
        CREATE TABLE IF NOT EXISTS index_embedding_space (
            id SMALLINT PRIMARY KEY CHECK (id = 1),
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            dimensions INT NOT NULL CHECK (dimensions > 0),
            recorded_at BIGINT NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS index_post_chunks; DROP TABLE IF EXISTS index_embedding_space;")
