"""The pgvector extension, needed by the embeddings this service owns.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")


def downgrade() -> None:
    # Other databases objects may use the type; dropping the extension is an operator's decision.
    pass
