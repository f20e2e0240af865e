"""Chunking of posts: each strategy, token sizes, overlap, code points and the metadata chunks keep."""

from __future__ import annotations

import itertools

import pytest

from services.common.errors import InvalidInput
from services.index.chunking import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    Chunker,
    ChunkingOptions,
    ChunkingStrategy,
    PostText,
    encoding,
)


def count(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def chunker(strategy: str, size: int, overlap: int = 0) -> Chunker:
    return Chunker(ChunkingOptions(ChunkingStrategy(strategy), size, overlap))


SENTENCES = [f"Sentence number {n} talks about topic {n}." for n in range(40)]


def test_a_post_that_fits_is_one_chunk_marked_as_not_split() -> None:
    post = PostText("p1", "c1", "t1", "u1", 1_700_000_000_123, "  A short post.  ")
    [chunk] = Chunker(ChunkingOptions()).chunks(post)
    assert chunk.text == "A short post."
    assert (chunk.index, chunk.total, chunk.is_chunk) == (0, 1, False)


def test_blank_posts_have_no_chunks() -> None:
    assert Chunker(ChunkingOptions()).split(" \n\t ") == []


def test_sentences_are_kept_whole_and_chunks_stay_within_size() -> None:
    text = " ".join(SENTENCES)
    chunks = chunker("sentences", 40).split(text)
    assert len(chunks) > 1
    for chunk in chunks:
        assert count(chunk) <= 40
        assert chunk.endswith(".")  # cut only between sentences
    assert " ".join(chunks) == text  # no overlap asked: nothing repeated, nothing lost


def test_sentence_overlap_repeats_the_trailing_whole_sentences() -> None:
    text = " ".join(SENTENCES)
    chunks = chunker("sentences", 40, overlap=12).split(text)
    for previous, current in itertools.pairwise(chunks):
        first_sentence = current.split(".")[0] + "."
        assert previous.endswith(first_sentence)  # the next chunk opens with the last sentence
        assert count(first_sentence) <= 12


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {n} line one.\nParagraph {n} line two." for n in range(12)]
    text = "\n\n".join(paragraphs)
    chunks = chunker("paragraphs", 30).split(text)
    assert len(chunks) > 1
    for chunk in chunks:
        assert count(chunk) <= 30
        assert all(p in paragraphs for p in chunk.split("\n\n"))


def test_a_paragraph_too_big_is_split_at_sentences() -> None:
    big = " ".join(SENTENCES[:10])
    chunks = chunker("paragraphs", 25).split(f"Intro.\n\n{big}\n\nOutro.")
    assert all(c.endswith(".") and count(c) <= 25 for c in chunks)
    joined = " ".join(chunks)
    assert all(sentence in joined for sentence in SENTENCES[:10])


def test_fixed_windows_have_the_size_and_the_overlap_in_tokens() -> None:
    text = " ".join(SENTENCES)
    chunks = chunker("fixed", 50, overlap=10).split(text)
    assert len(chunks) > 2
    assert all(count(c) <= 50 for c in chunks)
    assert all(count(c) >= 45 for c in chunks[:-1])  # full windows, not sentence-sized ones
    for previous, current in itertools.pairwise(chunks):
        shared = next(n for n in range(len(current), 0, -1) if previous.endswith(current[:n]))
        assert 8 <= count(current[:shared]) <= 12


@pytest.mark.parametrize("strategy", ["sentences", "paragraphs", "fixed"])
def test_no_chunk_splits_a_code_point(strategy: str) -> None:
    # Each emoji is 4 UTF-8 bytes that cl100k_base splits over two tokens; CJK is 3 bytes each.
    text = "😀🎉🚀 混合文本 " * 60 + "".join("🧪" for _ in range(200))
    chunks = chunker(strategy, 17, overlap=5).split(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk == chunk.encode("utf-8").decode("utf-8")
        assert count(chunk) <= 17
    # Nothing lost: every character of the text is in some chunk, in order.
    assert "".join(chunks).replace(" ", "").count("🧪") >= 200


@pytest.mark.parametrize("strategy", ["sentences", "fixed"])
def test_windows_without_overlap_lose_and_repeat_no_character(strategy: str) -> None:
    text = "😀🎉🚀混合文本" * 60 + "🧪" * 200  # no whitespace: the pieces must join back exactly
    chunks = chunker(strategy, 17).split(text)
    assert "".join(chunks) == text
    assert all(count(c) <= 17 for c in chunks)


def test_a_text_without_any_boundary_falls_back_to_token_windows() -> None:
    chunks = chunker("sentences", 20).split("x" * 2000)
    assert "".join(chunks) == "x" * 2000
    assert all(count(c) <= 20 for c in chunks)


def test_each_chunk_keeps_the_post_channel_team_user_create_time_and_its_index() -> None:
    post = PostText("post-9", "chan-3", "team-2", "user-7", 1_699_999_999_999, " ".join(SENTENCES))
    chunks = chunker("sentences", 40).chunks(post)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert (chunk.post_id, chunk.channel_id, chunk.team_id, chunk.user_id) == (
            "post-9",
            "chan-3",
            "team-2",
            "user-7",
        )
        assert chunk.create_at == 1_699_999_999_999
        assert chunk.total == len(chunks) and chunk.is_chunk


def test_options_come_from_the_plugin_config_with_zero_size_meaning_the_defaults() -> None:
    options = ChunkingOptions.from_config({"chunkSize": 0, "chunkOverlap": 999, "chunkingStrategy": "paragraphs"})
    assert options == ChunkingOptions(ChunkingStrategy.PARAGRAPHS, DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS)
    assert ChunkingOptions.from_config(None).strategy is ChunkingStrategy.SENTENCES
    assert ChunkingOptions.from_config({"chunkSize": 512, "chunkOverlap": 32}).overlap == 32


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"chunkingStrategy": "words"}, "chunkingOptions.chunkingStrategy"),
        ({"chunkSize": 100, "chunkOverlap": 100}, "chunkingOptions.chunkOverlap"),
        ({"chunkSize": 100_000}, "chunkingOptions.chunkSize"),
        ({"chunkSize": "big"}, "chunkingOptions.chunkSize"),
    ],
)
def test_bad_chunking_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        ChunkingOptions.from_config(options)
    assert raised.value.field == field
