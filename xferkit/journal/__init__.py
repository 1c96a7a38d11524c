"""Journals: where intents are made durable before anything is sent."""

from ._base import (
    LEGACY_ACCOUNT,
    Claim,
    Intent,
    IntentId,
    Journal,
    LeaseLostError,
    MovementTurn,
    StoredError,
    SweepJournal,
    movement_of,
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
    "MovementTurn",
    "PostgresJournal",
    "SqliteJournal",
    "StoredError",
    "SweepJournal",
    "movement_of",
]
