"""Token usage JSON-lines log with size rotation and gzip."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import multiprocessing

from services.llm.providers.base import Usage
from services.llm.usage_log import TokenUsageLog, TokenUsageRecord


def _record(n: int = 0) -> TokenUsageRecord:
    return TokenUsageRecord(
        user_id=f"user{n}",
        team_id="team1",
        bot_username="ai",
        model="gpt-4o",
        provider="openai",
        operation="conversation",
        input_tokens=100 + n,
        output_tokens=20,
        timestamp=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )


def test_each_record_is_one_json_object_per_line_with_the_documented_fields(tmp_path) -> None:
    path = tmp_path / "logs" / "agents" / "token_usage.log"
    log = TokenUsageLog(str(path))
    log.start()
    log.record(_record(1))
    log.record(_record(2))
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["user_id"] == "user1"
    assert first["team_id"] == "team1"
    assert first["bot_username"] == "ai"
    assert first["model"] == "gpt-4o"
    assert first["provider"] == "openai"
    assert first["operation"] == "conversation"
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (101, 20, 121)
    assert first["timestamp"] == "2025-01-02T03:04:05Z"
    assert first["schema_version"] == 1


def test_record_from_usage_event_carries_cached_and_reasoning_tokens() -> None:
    usage = Usage(input_tokens=10, output_tokens=5, cached_read_tokens=3, reasoning_tokens=2)
    rec = TokenUsageRecord.from_usage(
        usage, user_id="u", team_id="t", bot_username="b", model="m", provider="gemini", operation="search"
    )
    data = json.loads(rec.to_json())
    assert (data["total_tokens"], data["cached_tokens"], data["reasoning_tokens"]) == (15, 3, 2)


def test_full_file_rotates_into_gzipped_backups_and_keeps_every_record(tmp_path) -> None:
    path = tmp_path / "token_usage.log"
    log = TokenUsageLog(str(path), max_bytes=600, backup_count=50)
    log.start()
    for n in range(20):
        log.record(_record(n))
    log.close()

    rotated = sorted(tmp_path.glob("token_usage.log.*"))
    assert rotated, "expected at least one rotation"
    assert all(p.name.endswith(".gz") for p in rotated)
    lines: list[str] = []
    for p in sorted(rotated, key=lambda p: -int(p.name.split(".")[2])):  # oldest (highest n) first
        with gzip.open(p, "rt", encoding="utf-8") as fh:
            lines.extend(fh.read().splitlines())
    lines.extend(path.read_text().splitlines())
    assert [json.loads(line)["user_id"] for line in lines] == [f"user{n}" for n in range(20)]
    assert path.stat().st_size <= 600


def test_backup_count_bounds_the_number_of_rotated_files(tmp_path) -> None:
    path = tmp_path / "token_usage.log"
    log = TokenUsageLog(str(path), max_bytes=300, backup_count=2)
    log.start()
    for n in range(30):
        log.record(_record(n))
    log.close()
    assert sorted(p.name for p in tmp_path.glob("token_usage.log.*")) == [
        "token_usage.log.1.gz",
        "token_usage.log.2.gz",
    ]


async def test_recording_from_the_event_loop_does_not_block_and_close_drains(tmp_path) -> None:
    path = tmp_path / "u.log"
    log = TokenUsageLog(str(path))
    log.start()
    for n in range(100):
        log.record(_record(n))

    await asyncio.to_thread(log.close)
    assert len(path.read_text().splitlines()) == 100


def test_dash_writes_the_records_to_standard_output(capsys) -> None:
    log = TokenUsageLog("-")
    log.start()
    log.record(_record(3))
    log.close()
    assert json.loads(capsys.readouterr().out.strip())["user_id"] == "user3"


def test_an_unwritable_path_is_reported_and_standard_output_used_instead(tmp_path, capsys, caplog) -> None:
    # A read-only root filesystem in a pod: the folder cannot be made (a file stands in its way,
    # which refuses root too).
    (tmp_path / "logs").write_text("not a folder")
    log = TokenUsageLog(str(tmp_path / "logs" / "agents" / "token_usage.log"))
    log.start()
    log.record(_record(4))
    log.close()
    assert json.loads(capsys.readouterr().out.strip())["user_id"] == "user4"
    assert "cannot be written" in caplog.text and "standard output" in caplog.text


def _write_records(path: str, writer: int, count: int) -> None:
    log = TokenUsageLog(path, max_bytes=2000, backup_count=1000)
    log.start()
    for n in range(count):
        log.record(_record(writer * count + n))
    log.close()


def test_several_processes_share_the_file_and_its_rotation_without_losing_a_line(tmp_path) -> None:
    # The llm's workers (services/common/workers.py) each write the one log: a process that
    # rotated the file must not leave the others writing into the removed one.
    path, count = tmp_path / "token_usage.log", 300
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_records, args=(str(path), w, count)) for w in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    lines = path.read_text().splitlines()
    for rotated in tmp_path.glob("token_usage.log.*.gz"):
        with gzip.open(rotated, "rt", encoding="utf-8") as fh:
            lines.extend(fh.read().splitlines())
    assert sorted(json.loads(line)["user_id"] for line in lines) == sorted(f"user{n}" for n in range(2 * count))
