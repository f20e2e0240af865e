"""The body of every service's Alembic ``env.py``: migrate on the connection we hand in."""

from __future__ import annotations

from alembic import context


def run() -> None:
    """Run migrations online on ``config.attributes['connection']`` (set by ``db.run_migrations``)."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through services.common.db.run_migrations, not the alembic CLI")
    context.configure(
        connection=connection,
        version_table=config.attributes["version_table"],
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
