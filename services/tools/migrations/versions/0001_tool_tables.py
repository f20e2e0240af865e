"""Tool policies and per-conversation web search counters.

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
        CREATE TABLE IF NOT EXISTS tools_policies (
            tool_name VARCHAR(128) PRIMARY KEY,
            enabled BOOLEAN NOT NULL,
            approval VARCHAR(16) NOT NULL,
            auto_run_scope VARCHAR(16) NOT NULL,
            updated_by VARCHAR(26) NOT NULL DEFAULT '',
            update_at BIGINT NOT NULL
        );
        -- One row per conversation: the row lock on it serialises replicas counting searches.
        CREATE TABLE IF NOT EXISTS tools_conversation_counters (
            conversation_id VARCHAR(64) PRIMARY KEY,
            web_searches INT NOT NULL DEFAULT 0,
            update_at BIGINT NOT NULL
        );
        -- The primary key is what makes "never the same query twice" hold across replicas.
        CREATE TABLE IF NOT EXISTS tools_web_searches (
            conversation_id VARCHAR(64) NOT NULL,
            query_key TEXT NOT NULL,
            tool_call_id VARCHAR(128) NOT NULL DEFAULT '',
            create_at BIGINT NOT NULL,
            PRIMARY KEY (conversation_id, query_key)
        );
        -- URLs a search returned in a conversation: the only ones web_fetch will open.
        CREATE TABLE IF NOT EXISTS tools_web_results (
            conversation_id VARCHAR(64) NOT NULL,
            url TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            create_at BIGINT NOT NULL,
            PRIMARY KEY (conversation_id, url)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS tools_web_results; DROP TABLE IF EXISTS tools_web_searches;"
        " DROP TABLE IF EXISTS tools_conversation_counters; DROP TABLE IF EXISTS tools_policies;"
    )
