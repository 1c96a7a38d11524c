"""Journals: where intents are made durable before anything is sent."""

from ._base import Claim, Intent, Journal, LeaseLostError, StoredError
from .memory import MemoryJournal
from .postgres import PostgresJournal
from .sqlite import DEFAULT_JOURNAL_PATH, SqliteJournal

__all__ = [
    "DEFAULT_JOURNAL_PATH",
    "Claim",
    "Intent",
    "Journal",
    "LeaseLostError",
    "MemoryJournal",
    "PostgresJournal",
    "SqliteJournal",
    "StoredError",
]
