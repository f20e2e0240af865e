"""Conversation tables, in the plugin's schema (unquoted identifiers, so lower case in PostgreSQL),
plus the cluster's durability tables: one claim per handled Mattermost post, and one row per bot
post being written (stop flags that every replica sees, what a regenerate re-runs).

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS LLM_Conversations (
            ID TEXT PRIMARY KEY,
            UserID TEXT NOT NULL,
            BotID TEXT NOT NULL,
            ChannelID TEXT NULL,
            RootPostID TEXT NULL,
            Title TEXT NOT NULL DEFAULT '',
            SystemPrompt TEXT NOT NULL DEFAULT '',
            Operation TEXT NOT NULL DEFAULT '',
            CreatedAt BIGINT NOT NULL,
            UpdatedAt BIGINT NOT NULL,
            DeleteAt BIGINT NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX IF NOT EXISTS idx_llm_conversations_root_bot_user
            ON LLM_Conversations (RootPostID, BotID, UserID) WHERE RootPostID IS NOT NULL AND DeleteAt = 0;
        CREATE INDEX IF NOT EXISTS idx_llm_conversations_user_updated
            ON LLM_Conversations (UserID, UpdatedAt DESC) WHERE DeleteAt = 0;
        CREATE TABLE IF NOT EXISTS LLM_Turns (
            ID TEXT PRIMARY KEY,
            ConversationID TEXT NOT NULL,
            PostID TEXT NULL,
            Role TEXT NOT NULL,
            Content JSONB NOT NULL DEFAULT '[]'::jsonb,
            TokensIn BIGINT NOT NULL DEFAULT 0,
            TokensOut BIGINT NOT NULL DEFAULT 0,
            Sequence INT NOT NULL,
            CreatedAt BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS idx_llm_turns_conversation_sequence
            ON LLM_Turns (ConversationID, Sequence);
        CREATE INDEX IF NOT EXISTS idx_llm_turns_post ON LLM_Turns (PostID) WHERE PostID IS NOT NULL;
        CREATE TABLE IF NOT EXISTS LLM_HandledPosts (
            PostID TEXT PRIMARY KEY,
            ConversationID TEXT NOT NULL,
            ResponsePostID TEXT NOT NULL,
            CreatedAt BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS LLM_Streams (
            ResponsePostID TEXT PRIMARY KEY,
            ConversationID TEXT NOT NULL,
            UserID TEXT NOT NULL,
            RequestPostID TEXT NOT NULL DEFAULT '',
            Kind TEXT NOT NULL,
            Params JSONB NOT NULL DEFAULT '{}'::jsonb,
            NoRegen BOOLEAN NOT NULL DEFAULT false,
            State TEXT NOT NULL DEFAULT 'running',
            StopRequested BOOLEAN NOT NULL DEFAULT false,
            UpdatedAt BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_llm_streams_conversation ON LLM_Streams (ConversationID);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS LLM_Streams;
        DROP TABLE IF EXISTS LLM_HandledPosts;
        DROP TABLE IF EXISTS LLM_Turns;
        DROP TABLE IF EXISTS LLM_Conversations;
        """
    )
