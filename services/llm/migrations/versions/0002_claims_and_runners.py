"""Leased post claims and the replica running each stream.

``LLM_HandledPosts`` becomes the gateway's leased claim (``Conversations.ClaimPost``): who holds
it, until when, and whether the reply is final. A claim taken before any turn started has
ConversationID ''. ``LLM_Streams.Runner`` is the gRPC address of the llm replica running the
post's turn, so an ``Attach`` landing elsewhere is relayed to it.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE LLM_HandledPosts ADD COLUMN IF NOT EXISTS Claimant TEXT NOT NULL DEFAULT '';
        ALTER TABLE LLM_HandledPosts ADD COLUMN IF NOT EXISTS LeaseUntil BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE LLM_HandledPosts ADD COLUMN IF NOT EXISTS Finished BOOLEAN NOT NULL DEFAULT false;
        CREATE INDEX IF NOT EXISTS idx_llm_handledposts_open_leases
            ON LLM_HandledPosts (LeaseUntil) WHERE NOT Finished AND Claimant <> '';
        ALTER TABLE LLM_Streams ADD COLUMN IF NOT EXISTS Runner TEXT NOT NULL DEFAULT '';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE LLM_Streams DROP COLUMN IF EXISTS Runner;
        DROP INDEX IF EXISTS idx_llm_handledposts_open_leases;
        ALTER TABLE LLM_HandledPosts DROP COLUMN IF EXISTS Finished;
        ALTER TABLE LLM_HandledPosts DROP COLUMN IF EXISTS LeaseUntil;
        ALTER TABLE LLM_HandledPosts DROP COLUMN IF EXISTS Claimant;
        """
    )
