"""Journals: where intents are made durable before anything is sent."""

from ._base import (
    LEGACY_ACCOUNT,
    Claim,
    Intent,
    IntentId,
    Journal,
    LeaseLostError,
    StoredError,
    SweepJournal,
)
from .memory import MemoryJournal
from .postgres import PostgresJournal
from .sqlite import DEFAULT_JOURNAL_PATH, SqliteJournal

__all__ = [
    "DEFAULT_JOURNAL_PATH",
    "LEGACY_ACCOUNT",
    "Claim",
    "Intent",
    "IntentId",
    "Journal",
    "LeaseLostError",
    "MemoryJournal",
    "PostgresJournal",
    "SqliteJournal",
    "StoredError",
    "SweepJournal",
]
