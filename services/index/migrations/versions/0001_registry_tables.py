"""Registry tables, in the plugin's schema (unquoted identifiers, so lower case in PostgreSQL).

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
        CREATE TABLE IF NOT EXISTS Agents_System (
            SKey VARCHAR(64) PRIMARY KEY,
            SValue TEXT
        );
        CREATE TABLE IF NOT EXISTS Agents_ConfigHistory (
            ID VARCHAR(26) PRIMARY KEY,
            Config TEXT NOT NULL,
            CreateAt BIGINT NOT NULL,
            Active BOOLEAN NOT NULL DEFAULT false
        );
        CREATE UNIQUE INDEX IF NOT EXISTS idx_confighistory_active
            ON Agents_ConfigHistory (Active) WHERE Active;
        CREATE TABLE IF NOT EXISTS Agents_UserAgents (
            ID VARCHAR(26) PRIMARY KEY,
            BotUserID VARCHAR(26) NOT NULL,
            CreatorID VARCHAR(26) NOT NULL DEFAULT '',
            DisplayName VARCHAR(256) NOT NULL DEFAULT '',
            Username VARCHAR(64) NOT NULL,
            ServiceID VARCHAR(36) NOT NULL,
            CustomInstructions TEXT NOT NULL DEFAULT '',
            ChannelAccessLevel INT NOT NULL DEFAULT 0,
            ChannelIDs TEXT NOT NULL DEFAULT '[]',
            UserAccessLevel INT NOT NULL DEFAULT 0,
            UserIDs TEXT NOT NULL DEFAULT '[]',
            TeamIDs TEXT NOT NULL DEFAULT '[]',
            AdminUserIDs TEXT NOT NULL DEFAULT '[]',
            EnabledTools TEXT NOT NULL DEFAULT '[]',
            AutoEnableNewMCPTools BOOLEAN NOT NULL DEFAULT false,
            mcp_dynamic_tool_loading BOOLEAN NOT NULL DEFAULT true,
            Model VARCHAR(512) NOT NULL DEFAULT '',
            EnableVision BOOLEAN NOT NULL DEFAULT false,
            DisableTools BOOLEAN NOT NULL DEFAULT false,
            EnabledNativeTools TEXT NOT NULL DEFAULT '[]',
            ReasoningEnabled BOOLEAN NOT NULL DEFAULT true,
            ReasoningEffort VARCHAR(32) NOT NULL DEFAULT '',
            ThinkingBudget INT NOT NULL DEFAULT 0,
            StructuredOutputEnabled BOOLEAN NOT NULL DEFAULT false,
            MaxFileSize BIGINT NOT NULL DEFAULT 0,
            LastIconUpdate BIGINT NOT NULL DEFAULT 0,
            CreateAt BIGINT NOT NULL,
            UpdateAt BIGINT NOT NULL,
            DeleteAt BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS idx_useragents_creator ON Agents_UserAgents (CreatorID) WHERE DeleteAt = 0;
        CREATE INDEX IF NOT EXISTS idx_useragents_active ON Agents_UserAgents (DeleteAt);
        CREATE UNIQUE INDEX IF NOT EXISTS idx_useragents_bot_user_id_active
            ON Agents_UserAgents (BotUserID) WHERE DeleteAt = 0;
        CREATE UNIQUE INDEX IF NOT EXISTS idx_useragents_username_active
            ON Agents_UserAgents (Username) WHERE DeleteAt = 0;
        CREATE TABLE IF NOT EXISTS LLM_CustomPrompts (
            ID TEXT PRIMARY KEY,
            CreatorID TEXT NOT NULL,
            Name TEXT NOT NULL,
            Description TEXT NOT NULL DEFAULT '',
            Template TEXT NOT NULL DEFAULT '',
            IsShared BOOLEAN NOT NULL DEFAULT false,
            CreatedAt BIGINT NOT NULL DEFAULT 0,
            UpdatedAt BIGINT NOT NULL DEFAULT 0,
            DeletedAt BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS idx_customprompts_creator ON LLM_CustomPrompts (CreatorID) WHERE DeletedAt = 0;
        CREATE TABLE IF NOT EXISTS LLM_CustomPromptPins (
            UserID TEXT NOT NULL,
            PromptID TEXT NOT NULL,
            PRIMARY KEY (UserID, PromptID)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS LLM_CustomPromptPins;
        DROP TABLE IF EXISTS LLM_CustomPrompts;
        DROP TABLE IF EXISTS Agents_UserAgents;
        DROP TABLE IF EXISTS Agents_ConfigHistory;
        DROP TABLE IF EXISTS Agents_System;
        """
    )
