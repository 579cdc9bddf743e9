"""Full-text search: user text to a safe query, and the ranked query for each database.

Any text is a valid search. :func:`parse_query` keeps only plain words,
``"quoted phrases"`` and a trailing ``*`` for prefixes; everything else
(unbalanced quotes, ``-``, ``AND``, ``OR``, ``NEAR``, ``:``, ``^``, parentheses,
column filters) is read as words or separators, never as query syntax. The
terms are then rendered as an FTS5 MATCH string of quoted phrases (SQLite) or a
tsquery of quoted lexemes (PostgreSQL), so neither parser can fail on them.

Both databases ignore case and accents alike: SQLite's unicode61 tokenizer
(``remove_diacritics 2``) folds accents, so ``cafe`` finds ``café``; on
PostgreSQL the indexed tsvector is built from the text with the same letters
folded (migration ``0006_transcript_view``, :func:`fold_accents` here for the
query words), and the snippet is marked here, by :func:`make_snippet`.
PostgreSQL's parser still treats number symbols such as ``²`` or ``½`` as
separators.

Ranking covers the :data:`RANK_WINDOW` most recent matching turns (bm25 on
SQLite, ts_rank on PostgreSQL), which keeps every search fast however common
its words are.

Snippets mark each match as ``«match»`` (:data:`HIGHLIGHT_START`,
:data:`HIGHLIGHT_END`): guillemets are rare in speech transcripts and need no
escaping in HTML, Markdown or a terminal.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    TextClause,
    column,
    func,
    literal_column,
    null,
    select,
    table,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

from storage.models import MeetingRow, ParticipantRow, TurnRow

__all__ = [
    "ELLIPSIS",
    "HIGHLIGHT_END",
    "HIGHLIGHT_START",
    "MAX_TERMS",
    "RANK_WINDOW",
    "Term",
    "build_count",
    "build_search",
    "estimate_statement",
    "fold_accents",
    "fold_table",
    "is_dense_estimate",
    "make_snippet",
    "parse_query",
    "to_fts5_match",
    "to_tsquery",
]

HIGHLIGHT_START = "«"
HIGHLIGHT_END = "»"
ELLIPSIS = "…"
# Bounds the work one search can ask for; further terms are ignored.
MAX_TERMS = 16
# Ranking scores every candidate (bm25 costs ~10 us a row on SQLite), so a
# word found in most turns would take seconds over a million turns. Only the
# most recent RANK_WINDOW matches (after the filters) are ranked: every search
# stays well under 100 ms (bench/bench_search.py), and for a query matching
# more turns than that, recent turns are the likelier ones to be wanted.
RANK_WINDOW = 2000
# PostgreSQL: terms estimated to match more than this many windows' worth of
# turns are "dense" (measured at 1M turns: 12k matches sort in ~10 ms from GIN,
# 650k matches are found newest-first in ~5 ms; see build_search).
_DENSE_FACTOR = 20
# Tokens around a match in an SQLite snippet (FTS5 allows up to 64).
_SNIPPET_TOKENS = 16

_PHRASE = re.compile(r'"([^"]*)"(\*?)')
# A word as both FTS5 unicode61 and PostgreSQL's parser see it: letters and
# digits; underscore, apostrophes, hyphens and every symbol separate words.
_WORD = re.compile(r"([^\W_]+)(\*?)")


# Letters SQLite's unicode61 does not fold although they decompose like the
# others (found by matching every candidate in FTS5; see fold_table).
_NOT_FOLDED_BY_SQLITE = frozenset("\u01e0\u01e1")
_FOLD_RANGES = ((0x00C0, 0x0250), (0x1E00, 0x1F00))
_COMBINING_MARKS = range(0x0300, 0x0370)
# Words around the first match in a snippet made by make_snippet (as ts_headline's MaxWords).
_SNIPPET_WORDS = 24


def fold_table() -> tuple[str, str, str]:
    """The accent folding both databases apply: ``(from, to, deleted)`` characters.

    Every Latin letter (Latin-1, Extended-A/B, Extended Additional) that is an
    ASCII letter plus combining marks folds to that letter, as unicode61 with
    ``remove_diacritics 2`` does; combining marks themselves are deleted.
    Migration ``0006_transcript_view`` holds a copy for PostgreSQL's
    ``translate`` (a test checks they agree).
    """
    sources, targets = [], []
    for low, high in _FOLD_RANGES:
        for code in range(low, high):
            char = chr(code)
            parts = unicodedata.normalize("NFD", char)
            if (
                char.isalpha()
                and len(parts) > 1
                and parts[0].isascii()
                and all(unicodedata.category(mark) == "Mn" for mark in parts[1:])
                and char not in _NOT_FOLDED_BY_SQLITE
            ):
                sources.append(char)
                targets.append(parts[0])
    return "".join(sources), "".join(targets), "".join(chr(c) for c in _COMBINING_MARKS)


_SOURCES, _TARGETS, _DELETED = fold_table()
_FOLD = str.maketrans(_SOURCES, _TARGETS, _DELETED)


def fold_accents(text: str) -> str:
    """``text`` with accents folded as the search index folds them (``Délayed`` -> ``Delayed``)."""
    return text.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class Term:
    """One thing every hit must contain: a word, or adjacent words (a phrase).

    Attributes:
        words: the words, in order; more than one means they must be adjacent.
        is_prefix: the last word may be the start of a longer word.
    """

    words: tuple[str, ...]
    is_prefix: bool = False


def _terms_of(chunk: str, *, is_prefix: bool | None = None) -> Term | None:
    matches = _WORD.findall(chunk)
    if not matches:
        return None
    words = tuple(word for word, _ in matches)
    prefix = matches[-1][1] == "*" if is_prefix is None else is_prefix
    return Term(words, prefix)


def parse_query(text: str) -> tuple[Term, ...]:
    """Split user text into search terms; never fails.

    ``"..."`` (balanced) is a phrase, a ``*`` straight after a word or a
    closing quote makes a prefix, and a whitespace-separated chunk made of
    several words (``e-mail``, ``text:budget``) is a phrase of those words.

    Returns:
        The terms (at most :data:`MAX_TERMS`), all of which a hit must contain;
        empty if the text holds no words.
    """
    terms: list[Term] = []
    position = 0

    def add_loose(segment: str) -> None:
        for chunk in segment.split():
            term = _terms_of(chunk)
            if term is not None:
                terms.append(term)

    for match in _PHRASE.finditer(text):
        add_loose(text[position : match.start()])
        term = _terms_of(match.group(1), is_prefix=match.group(2) == "*")
        if term is not None:
            terms.append(term)
        position = match.end()
    add_loose(text[position:])
    return tuple(terms[:MAX_TERMS])


def to_fts5_match(terms: tuple[Term, ...]) -> str:
    """Render terms as an FTS5 MATCH expression of quoted phrases.

    Inside double quotes FTS5 treats every character as text for the
    tokenizer, so no operator or column filter can slip through
    (https://sqlite.org/fts5.html section 3.1).
    """
    parts = []
    for term in terms:
        phrase = " ".join(term.words).replace('"', '""')
        parts.append(f'"{phrase}"' + (" *" if term.is_prefix else ""))
    return " AND ".join(parts)


def to_tsquery(terms: tuple[Term, ...]) -> str:
    """Render terms as a ``to_tsquery`` string of quoted lexemes.

    Words hold only letters and digits, so quoting them in single quotes is
    enough; phrases use ``<->`` (followed by) and prefixes ``:*``.
    """
    parts = []
    for term in terms:
        lexemes = [f"'{fold_accents(word).replace(chr(39), chr(39) * 2)}'" for word in term.words]
        if term.is_prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


def _filters(
    *, channel: str | None, speaker: str | None, since: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if channel is not None:
        conditions.append(MeetingRow.channel == channel)
    if since is not None:
        conditions.append(MeetingRow.started_at >= since)
    if speaker is not None:
        by_name = func.lower(ParticipantRow.display_name) == speaker.strip().lower()
        if speaker.strip().isdigit():
            conditions.append(by_name | (ParticipantRow.uid == int(speaker.strip())))
        else:
            conditions.append(by_name)
    return conditions


def _hit_columns() -> list[Any]:
    return [
        TurnRow.id.label("turn_id"),
        TurnRow.meeting_id,
        MeetingRow.channel,
        MeetingRow.started_at.label("meeting_started_at"),
        ParticipantRow.uid,
        ParticipantRow.display_name,
        TurnRow.start_ms,
        TurnRow.end_ms,
        TurnRow.text,
    ]


def estimate_statement(terms: tuple[Term, ...]) -> TextClause:
    """PostgreSQL: ask the planner how many turns match (from the tsvector statistics).

    The statement returns one JSON plan; see :func:`is_dense_estimate`.
    """
    return text(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM turns "
        "WHERE text_search @@ to_tsquery('simple'::regconfig, :query)"
    ).bindparams(query=to_tsquery(terms))


def is_dense_estimate(plan: Any, window: int = RANK_WINDOW) -> bool:
    """Whether an :func:`estimate_statement` plan predicts a dense match.

    Above that, walking turns newest-first meets ``window`` matches within a
    few thousand rows; below it, sorting the GIN index's matches is cheaper.
    """
    try:
        if isinstance(plan, str):
            plan = json.loads(plan)
        rows = float(plan[0]["Plan"]["Plan Rows"])
    except (LookupError, TypeError, ValueError):
        return False
    return rows > _DENSE_FACTOR * window


def _window_start(recent: Select[Any]) -> ColumnElement[Any]:
    """The smallest turn id among the window of most recent matches (0 if none)."""
    window = recent.subquery("recent")
    return func.coalesce(select(func.min(window.c.id)).scalar_subquery(), 0)


def build_count(
    dialect: str,
    terms: tuple[Term, ...],
    *,
    channel: str | None = None,
    speaker: str | None = None,
    since: datetime | None = None,
    cap: int = RANK_WINDOW,
) -> Select[Any]:
    """How many turns match, counting at most ``cap`` (so a common word stays cheap)."""
    conditions = _filters(channel=channel, speaker=speaker, since=since)
    if dialect == "sqlite":
        fts = table("turns_fts", column("rowid", Integer))
        matches = literal_column("turns_fts").op("MATCH")(to_fts5_match(terms))
        found = select(fts.c.rowid).select_from(fts).join(TurnRow, TurnRow.id == fts.c.rowid)
    elif dialect == "postgresql":
        tsquery = func.to_tsquery(literal_column("'simple'::regconfig"), to_tsquery(terms))
        matches = literal_column("turns.text_search").op("@@")(tsquery)
        found = select(TurnRow.id)
    else:
        raise ValueError(f"no full-text search for dialect {dialect!r}")
    capped = (
        found.join(MeetingRow, MeetingRow.id == TurnRow.meeting_id)
        .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
        .where(matches, *conditions)
        .limit(cap)
        .subquery("capped")
    )
    return select(func.count()).select_from(capped)


def build_search(
    dialect: str,
    terms: tuple[Term, ...],
    *,
    channel: str | None = None,
    speaker: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    window: int = RANK_WINDOW,
    is_dense: bool = True,
) -> Select[Any]:
    """The ranked search statement for a dialect.

    Its rows carry the :class:`storage.records.SearchHit` fields, best first;
    ``rank`` is larger for better matches on both databases.

    Args:
        dialect: ``sqlite`` or ``postgresql``.
        terms: from :func:`parse_query`; must not be empty.
        channel: only meetings of this channel.
        speaker: only turns of the participant with this display name
            (case-insensitive) or uid.
        since: only meetings started at or after this time.
        limit: at most this many hits.
        window: rank only the most recent this-many matching turns.
        is_dense: PostgreSQL only: whether the terms match so many turns that
            walking the primary key backwards finds the window fastest (see
            :func:`is_dense_estimate`); otherwise the matches are collected
            from the GIN index and sorted.
    """
    conditions = _filters(channel=channel, speaker=speaker, since=since)
    if dialect == "sqlite":
        fts = table("turns_fts", column("rowid", Integer))
        fts_ref: ColumnElement[Any] = literal_column("turns_fts")
        matches = fts_ref.op("MATCH")(to_fts5_match(terms))

        def joined(statement: Select[Any]) -> Select[Any]:
            return (
                statement.select_from(fts)
                .join(TurnRow, TurnRow.id == fts.c.rowid)
                .join(MeetingRow, MeetingRow.id == TurnRow.meeting_id)
                .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
                .where(matches, *conditions)
            )

        # FTS5 walks matches in rowid order without ranking them; only the
        # window's rows get a bm25 score (the rowid range is an index seek).
        recent = joined(select(fts.c.rowid.label("id")))
        cutoff = _window_start(recent.order_by(fts.c.rowid.desc()).limit(window))
        bm25 = func.bm25(fts_ref, type_=Float)
        ranked = (
            joined(select(*_hit_columns(), (-bm25).label("rank")))
            .where(fts.c.rowid >= cutoff)
            .order_by(bm25, TurnRow.id)
            .limit(limit)
            .subquery("ranked")
        )
        # snippet() is costly: compute it for the returned rows only, each
        # by a MATCH plus rowid lookup (a correlated subquery, so that FTS5
        # never walks every match again).
        snippet = (
            select(
                func.snippet(fts_ref, 0, HIGHLIGHT_START, HIGHLIGHT_END, ELLIPSIS, _SNIPPET_TOKENS)
            )
            .select_from(fts)
            .where(matches, fts.c.rowid == ranked.c.turn_id)
            .scalar_subquery()
        )
        return select(
            *[c for c in ranked.c if c.name != "rank"], snippet.label("snippet"), ranked.c.rank
        ).order_by(ranked.c.rank.desc(), ranked.c.turn_id)
    if dialect == "postgresql":
        config: ColumnElement[Any] = literal_column("'simple'::regconfig")
        tsquery = func.to_tsquery(config, to_tsquery(terms))
        text_search: ColumnElement[Any] = literal_column("turns.text_search")

        def filtered(statement: Select[Any]) -> Select[Any]:
            return (
                statement.join(MeetingRow, MeetingRow.id == TurnRow.meeting_id)
                .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
                .where(text_search.op("@@")(tsquery), *conditions)
            )

        # "id + 0" hides the primary key's order from the planner, so it
        # takes the GIN index instead of scanning backwards for sparse terms.
        newest_first = TurnRow.id.desc() if is_dense else (TurnRow.id + 0).desc()
        window_ids = (
            filtered(select(TurnRow.id.label("id")))
            .order_by(newest_first)
            .limit(window)
            .subquery("recent")
        )
        # Rank the window's turns, fetched by primary key.
        rank = func.ts_rank(text_search, tsquery, type_=Float)
        ranked = (
            select(*_hit_columns(), rank.label("rank"))
            .select_from(window_ids)
            .join(TurnRow, TurnRow.id == window_ids.c.id)
            .join(MeetingRow, MeetingRow.id == TurnRow.meeting_id)
            .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
            .order_by(rank.desc(), TurnRow.id)
            .limit(limit)
            .subquery("ranked")
        )
        # ts_headline would match the unfolded text against folded words and
        # miss "Délayed" for "delayed": make_snippet marks the returned rows.
        return select(
            *[c for c in ranked.c if c.name != "rank"],
            null().label("snippet"),
            ranked.c.rank,
        ).order_by(ranked.c.rank.desc(), ranked.c.turn_id)
    raise ValueError(f"no full-text search for dialect {dialect!r}")


def make_snippet(text: str, terms: tuple[Term, ...], words: int = _SNIPPET_WORDS) -> str:
    """Up to ``words`` words of ``text`` around its first match, each match «marked».

    Words match as the index matches them: case and accents folded, the last
    word of a prefix term as a prefix, a phrase's words adjacent.
    """
    tokens = [
        (match.start(), match.end(), fold_accents(match.group()).lower())
        for match in re.finditer(r"[^\W_]+", text)
    ]
    if not tokens:
        return text
    marked: set[int] = set()
    for term in terms:
        wanted = [fold_accents(word).lower() for word in term.words]
        size = len(wanted)
        for i in range(len(tokens) - size + 1):
            found = [tokens[i + k][2] for k in range(size)]
            if found[:-1] == wanted[:-1] and (
                found[-1].startswith(wanted[-1]) if term.is_prefix else found[-1] == wanted[-1]
            ):
                marked.update(range(i, i + size))
    first = min(marked) if marked else 0
    start = max(0, min(first - 3, len(tokens) - words))
    end = min(len(tokens), start + words)
    pieces = [ELLIPSIS + " " if start > 0 else ""]
    position = tokens[start][0] if start > 0 else 0
    for index in range(start, end):
        begin, finish, _ = tokens[index]
        pieces.append(text[position:begin])
        word = text[begin:finish]
        pieces.append(f"{HIGHLIGHT_START}{word}{HIGHLIGHT_END}" if index in marked else word)
        position = finish
    if end < len(tokens):
        pieces.append(" " + ELLIPSIS)
    else:
        pieces.append(text[position:])
    return "".join(pieces)
