"""Users' OAuth grants for remote MCP servers, and the pending authorizations (``state``).

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
        -- Tokens and client secrets are AES-GCM sealed (AGENTS_MCP_TOKEN_KEY); the token endpoint is
        -- the one the grant was issued by: refreshes go there and nowhere else.
        CREATE TABLE IF NOT EXISTS mcp_oauth_grants (
            user_id VARCHAR(26) NOT NULL,
            server_name VARCHAR(256) NOT NULL,
            access_token BYTEA NOT NULL,
            refresh_token BYTEA,
            expires_at BIGINT,
            token_endpoint TEXT NOT NULL,
            revocation_endpoint TEXT NOT NULL DEFAULT '',
            client_id TEXT NOT NULL,
            client_secret BYTEA,
            update_at BIGINT NOT NULL,
            PRIMARY KEY (user_id, server_name)
        );
        -- Keyed by the state's hash: a leaked table row cannot complete anyone's flow.
        CREATE TABLE IF NOT EXISTS mcp_oauth_states (
            state_hash VARCHAR(64) PRIMARY KEY,
            user_id VARCHAR(26) NOT NULL,
            server_name VARCHAR(256) NOT NULL,
            code_verifier BYTEA NOT NULL,
            redirect_uri TEXT NOT NULL,
            token_endpoint TEXT NOT NULL,
            revocation_endpoint TEXT NOT NULL DEFAULT '',
            client_id TEXT NOT NULL,
            client_secret BYTEA,
            expires_at BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS mcp_oauth_states_expiry ON mcp_oauth_states (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mcp_oauth_states; DROP TABLE IF EXISTS mcp_oauth_grants;")
