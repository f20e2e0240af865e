"""A reindex worker process: ``python -m services.index.reindex.worker --job-id <job id>``, with the
index service's environment (database URL, Mattermost settings).

It takes partition leases of the job until every partition is done or the job ended, then exits
0; it exits 1 when the job failed (so a Kubernetes Job shows it) or on a fatal error (no
database, no Mattermost). The index service starts these as
child processes when ``AGENTS_INDEX_REINDEX_WORKERS`` is above 1; a Kubernetes Job runs the same
command in each of its pods.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from services.index.reindex.store import Job
from services.index.server import create_server
from services.index.settings import load

logger = logging.getLogger(__name__)


async def run(job_id: str) -> Job:
    """Read the job's partitions with the configuration and license the index service has; the
    job as it is then."""
    process = await create_server(load())
    try:
        await process.feed.refresh()
        await process.license.start()
        await process.reindexer.run_job(job_id, wait=True)
        return await process.reindexer.jobs.job(job_id)
    finally:
        await process.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-id", required=True, help="the reindex job whose partitions to read")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        job = asyncio.run(run(args.job_id))
    except Exception:
        logger.exception("reindex worker failed")
        return 1
    if job.status == "failed":
        logger.error("reindex job %s failed: %s", job.id, job.error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
