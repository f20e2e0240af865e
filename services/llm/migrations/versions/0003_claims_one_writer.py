"""One writer of the post claims.

``LLM_HandledPosts`` holds only the gateway's leased claims (the claim RPCs); Respond no longer
records its conversation there. Respond's refusal of a second answer to the same post is one
conversation stream per request post instead (``LLM_Streams``, which already named the request
post of every answer), and the reply posts of a conversation are read from there too.

Rows Respond wrote without a claimant were answered posts: they stay, finished. Duplicate
conversation streams of one request post (a start that failed and was tried again) keep the
newest, which is the one that answered.

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
        UPDATE LLM_HandledPosts SET Finished = true WHERE Claimant = '';
        ALTER TABLE LLM_HandledPosts DROP COLUMN IF EXISTS ConversationID;
        DROP INDEX IF EXISTS idx_llm_handledposts_open_leases;
        CREATE INDEX IF NOT EXISTS idx_llm_handledposts_open_leases ON LLM_HandledPosts (LeaseUntil)
            WHERE NOT Finished;
        DELETE FROM LLM_Streams a USING LLM_Streams b
            WHERE a.Kind = 'conversation' AND b.Kind = 'conversation' AND a.RequestPostID <> ''
            AND a.RequestPostID = b.RequestPostID
            AND (a.UpdatedAt, a.ResponsePostID) < (b.UpdatedAt, b.ResponsePostID);
        CREATE UNIQUE INDEX IF NOT EXISTS idx_llm_streams_request_post ON LLM_Streams (RequestPostID)
            WHERE Kind = 'conversation' AND RequestPostID <> '';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS idx_llm_streams_request_post;
        DROP INDEX IF EXISTS idx_llm_handledposts_open_leases;
        CREATE INDEX IF NOT EXISTS idx_llm_handledposts_open_leases ON LLM_HandledPosts (LeaseUntil)
            WHERE NOT Finished AND Claimant <> '';
        ALTER TABLE LLM_HandledPosts ADD COLUMN IF NOT EXISTS ConversationID TEXT NOT NULL DEFAULT '';
        """
    )
