"""Token usage records, one JSON object per line, for billing and usage analysis.

The admin guide promises ``logs/agents/token_usage.log`` with one JSON object per line (so ``jq``
can turn it into CSV), rotation at 100 MB and compressed rotated files. Rotation is the stdlib
``RotatingFileHandler`` with its ``namer``/``rotator`` hooks doing the gzip, safe for several
writer processes (``SharedRotatingFileHandler``); records travel through
a ``QueueHandler`` so the event loop only enqueues, and the file I/O, rotation and compression
happen on the ``QueueListener``'s thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import gzip
import json
import logging
import logging.handlers
import os
import queue
import shutil
import sys
from dataclasses import dataclass, field

from services.llm.providers.base import Usage

logger = logging.getLogger(__name__)

DEFAULT_PATH = "logs/agents/token_usage.log"
STDOUT = "-"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 10
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TokenUsageRecord:
    """One upstream call's token usage. Field names are the log's JSON keys (the plugin's)."""

    user_id: str
    team_id: str
    bot_username: str
    model: str
    provider: str  # the service type, e.g. "openai", "gemini"
    operation: str  # e.g. "conversation", "thread_analysis", "title_generation"
    input_tokens: int
    output_tokens: int
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    operation_subtype: str = ""  # "streaming", "nostream", "tool_call", ...
    channel_id: str = ""
    agent_user_id: str = ""
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_usage(cls, usage: Usage, **identity: str | dt.datetime) -> TokenUsageRecord:
        """Build a record from a stream's ``Usage`` event plus who/what/where (keyword fields)."""
        return cls(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_read_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            **identity,  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        """The log line (without the newline): stable keys, UTC RFC 3339 timestamp."""
        data = dataclasses.asdict(self)
        data["timestamp"] = self.timestamp.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        data["total_tokens"] = self.total_tokens
        data["schema_version"] = SCHEMA_VERSION
        return json.dumps(data, separators=(",", ":"), sort_keys=True)


def gzip_rotated_name(default_name: str) -> str:
    """``RotatingFileHandler`` namer: rotated files end in ``.gz``."""
    return default_name + ".gz"


def gzip_rotate(source: str, dest: str) -> None:
    """``RotatingFileHandler`` rotator: compress the full log into ``dest``, then remove it."""
    with open(source, "rb") as src, gzip.open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    os.remove(source)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A ``RotatingFileHandler`` that several processes (the llm's workers) write at once: each
    line and each rotation under an exclusive lock on ``.<name>.lock`` beside the file, which is
    reopened when another process rotated it away, so that no line is lost in a removed file or
    rotated twice. Lines are whole: the file is opened for appending, each line written in one call."""

    def __init__(self, filename: str, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        folder, name = os.path.split(self.baseFilename)
        self._lock_fd = os.open(os.path.join(folder, f".{name}.lock"), os.O_CREAT | os.O_RDWR, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` (rotating first when full) while holding the lock."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            if self.stream is not None and _rotated_away(self.baseFilename, self.stream.fileno()):
                self.stream.close()
                self.stream = None  # reopened by the rollover check
            super().emit(record)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file and the lock."""
        super().close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _rotated_away(path: str, fd: int) -> bool:
    """Whether the file open as ``fd`` is no longer the one at ``path``."""
    try:
        return os.stat(path).st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return True


class TokenUsageLog:
    """Appends ``TokenUsageRecord``s to a rotating JSON-lines file without blocking the caller.

    ``start()`` before use, ``close()`` at shutdown (it drains what is still queued).
    """

    def __init__(
        self,
        path: str = DEFAULT_PATH,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backup_count: int = DEFAULT_BACKUP_COUNT,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._listener: logging.handlers.QueueListener | None = None
        self._handler: logging.Handler | None = None
        # A private logger outside the logging manager's tree: nothing propagates to the root
        # logger (whose JSON handler would duplicate records) and nothing is global.
        self._logger = logging.Logger("agents.token_usage", logging.INFO)

    def start(self) -> None:
        """Open the file (creating its folder) and start the writer thread.

        ``-`` writes to standard output (a container's log). A file that cannot be opened is
        reported and standard output used instead, so that enabled logging never writes nothing.
        """
        if self._listener is not None:
            return
        handler = self._stdout_handler() if self.path == STDOUT else self._file_or_stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._logger.addHandler(logging.handlers.QueueHandler(records))
        self._listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
        self._handler = handler
        self._listener.start()

    def _file_or_stdout(self) -> logging.Handler:
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            handler = SharedRotatingFileHandler(self.path, self.max_bytes, self.backup_count)
        except OSError as err:
            logger.error(
                "token usage log %s cannot be written (%s): writing the records to standard output instead",
                self.path,
                err.strerror or type(err).__name__,
            )
            return self._stdout_handler()
        handler.namer = gzip_rotated_name
        handler.rotator = gzip_rotate
        return handler

    @staticmethod
    def _stdout_handler() -> logging.Handler:
        return logging.StreamHandler(sys.stdout)

    def record(self, usage: TokenUsageRecord) -> None:
        """Queue one record; returns at once (safe to call on the event loop)."""
        if self._listener is None:
            raise RuntimeError("TokenUsageLog.start() was not called")
        self._logger.info("%s", usage.to_json())

    def close(self) -> None:
        """Write everything queued, then close the file. Blocks briefly: call via to_thread."""
        if self._listener is None:
            return
        self._listener.stop()
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)
        if self._handler is not None:
            self._handler.close()
        self._listener = None
        self._handler = None
