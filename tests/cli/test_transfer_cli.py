"""`xferkit transfer`: one transfer against fake venues on loopback, configured by env vars."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from xferkit.testing import Fault

from .conftest import CREDENTIALS, SECRETS, UNKNOWN_SPELLING, Fakes, invoke

OUTCOME_FIELDS = {
    "key",
    "venue",
    "status",
    "amount",
    "currency",
    "from_account",
    "to_account",
    "symbol",
    "margin_account",
    "attempts",
    "transfer_id",
    "replayed",
    "created_at",
    "finished_at",
    "error",
}
XT_MOVE = ("xt", "usdt", "0.1", "--from", "spot", "--to", "usdt_futures")


def test_transfer_succeeds_and_prints_the_receipt(fakes: Fakes, tmp_path: Path) -> None:
    """A transfer SUCCEEDED: exit 0, the receipt as JSON, the exact Decimal amount at the venue,
    and the same command again replays it without a request."""
    journal = tmp_path / "new" / "journal.sqlite3"
    args = (*XT_MOVE, "--key", "t-ok", "--journal", journal)
    result = invoke("transfer", *args, "--json", env=fakes.env)
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert set(receipt) == OUTCOME_FIELDS
    assert receipt["status"] == "SUCCEEDED"
    assert receipt["amount"] == "0.1"
    assert receipt["replayed"] is False
    assert receipt["transfer_id"] == fakes.xt.audit[0].transfer_id
    assert fakes.xt.audit[0].amount == Decimal("0.1")  # never through a float
    assert journal.is_file()  # transfer creates the journal (and its directory)
    sent = fakes.transfer_requests()
    again = invoke("transfer", *args, env=fakes.env)
    assert again.exit_code == 0, again.output
    assert "SUCCEEDED before: key t-ok was already settled" in again.stdout
    assert fakes.transfer_requests() == sent
    assert len(fakes.xt.audit) == 1
    for secret in SECRETS:
        assert secret not in result.output + again.output


def test_a_refusal_exits_1_and_says_nothing_moved(fakes: Fakes, tmp_path: Path) -> None:
    """The venue refuses (insufficient balance): exit 1, FAILED with the venue's code, and the
    key stays refused without a new request."""
    journal = tmp_path / "journal.sqlite3"
    args = ("xt", "usdt", "99999999", "--from", "spot", "--to", "usdt_futures")
    result = invoke("transfer", *args, "--key", "t-no", "--journal", journal, env=fakes.env)
    assert result.exit_code == 1, result.output
    assert "FAILED: xt refused the transfer (FUND_002" in result.stdout
    assert "nothing moved" in result.stdout
    sent = fakes.transfer_requests()
    again = invoke(
        "transfer", *args, "--key", "t-no", "--journal", journal, "--json", env=fakes.env
    )
    assert again.exit_code == 1
    outcome = json.loads(again.stdout)
    assert outcome["status"] == "FAILED"
    assert outcome["replayed"] is True
    assert outcome["error"]["code"] == "FUND_002"
    assert outcome["error"]["kind"] == "InsufficientBalanceError"
    assert fakes.transfer_requests() == sent
    assert fakes.xt.audit == ()


def test_an_unknown_outcome_exits_1_and_points_to_resume(fakes: Fakes, tmp_path: Path) -> None:
    """An HTX answer lost after the venue committed, its ledger row in a transferType spelling
    xferkit does not know (cannot tell): exit 1, UNKNOWN, and the hint to run `xferkit resume`."""
    journal = tmp_path / "journal.sqlite3"
    fakes.htx.transfer_types[("spot", "linear-swap")] = UNKNOWN_SPELLING
    fakes.htx_faults.force(Fault.DROP_AFTER)
    args = ("htx", "btc", "0.5", "--from", "spot", "--to", "usdt_futures")
    result = invoke("transfer", *args, "--journal", journal, env=fakes.env)
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "UNKNOWN: htx did not say whether the transfer executed" in text
    assert "Run `xferkit resume` to settle it" in text
    found = re.search(r"Do not repeat the command without --key (cli-[0-9a-f-]+)", text)
    assert found is not None  # the generated key, to repeat the command safely
    sent = fakes.transfer_requests()
    again = invoke(
        "transfer", *args, "--key", found[1], "--journal", journal, "--json", env=fakes.env
    )
    assert again.exit_code == 1
    outcome = json.loads(again.stdout)
    assert (outcome["key"], outcome["status"]) == (found[1], "UNKNOWN")
    assert outcome["error"]["kind"] == "TransferOutcomeUnknownError"
    assert fakes.transfer_requests() == sent  # HTX has no key: never resent blindly
    assert len(fakes.htx.audit) == 1


@pytest.mark.parametrize(
    "amount", ["1e3", "0", "0.000", "abc", "NaN", "1,5", "\u0661\u0660"]
)  # the last: Arabic-Indic digits
def test_a_bad_amount_exits_2_before_anything(fakes: Fakes, tmp_path: Path, amount: str) -> None:
    """An amount that is not plain positive decimal digits: exit 2, no journal, no request."""
    journal = tmp_path / "journal.sqlite3"
    args = ("xt", "usdt", amount, "--from", "spot", "--to", "usdt_futures")
    result = invoke("transfer", *args, "--journal", journal, env=fakes.env)
    assert result.exit_code == 2, result.output
    assert "AMOUNT" in result.stderr
    assert not journal.exists()
    assert fakes.transfer_requests() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("htx", "usdt", "5", "--from", "spot", "--to", "otc", "--margin-account", "USDT"),
            "margin_account applies only",
        ),
        (("xt", "usdt", "5", "--from", "spot", "--to", "margin"), "needs symbol"),
        (("xt", "usdt", "5", "--from", "spot", "--to", "spot"), "are both 'spot'"),
        (("xt", "usdt", "5", "--from", "spot", "--to", "moon"), "moon"),
        ((*XT_MOVE, "--key", " padded"), "key must be printable"),
    ],
)
def test_bad_input_exits_2_before_the_journal(
    fakes: Fakes, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """A transfer the venue's rules refuse is exit 2, caught before the journal is opened."""
    journal = tmp_path / "journal.sqlite3"
    result = invoke("transfer", *args, "--journal", journal, env=fakes.env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not journal.exists()


def test_a_key_used_for_another_transfer_exits_2(fakes: Fakes, tmp_path: Path) -> None:
    """Reusing a key with another amount is refused (exit 2) and sends nothing."""
    journal = tmp_path / "journal.sqlite3"
    first = invoke("transfer", *XT_MOVE, "--key", "t-k", "--journal", journal, env=fakes.env)
    assert first.exit_code == 0, first.output
    args = ("xt", "usdt", "0.2", "--from", "spot", "--to", "usdt_futures", "--key", "t-k")
    result = invoke("transfer", *args, "--journal", journal, env=fakes.env)
    assert result.exit_code == 2
    assert "already used for a transfer with different parameters" in result.stderr
    assert len(fakes.xt.audit) == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET are not set"),
        ({"XFERKIT_XT_API_KEY": "k"}, "XFERKIT_XT_SECRET is not set"),
        (
            {"XFERKIT_HTX_ACCESS_KEY": "k", "XFERKIT_HTX_SECRET": "s"},
            "XFERKIT_XT_API_KEY and XFERKIT_XT_SECRET are not set",
        ),
        ({**CREDENTIALS, "XFERKIT_XT_BASE_URL": "127.0.0.1:9"}, "must start with http://"),
    ],
)
def test_missing_credentials_exit_2(tmp_path: Path, env: dict[str, str], message: str) -> None:
    """Without the venue's credentials (or with a base URL without a scheme): exit 2, the
    variables named, no journal."""
    journal = tmp_path / "journal.sqlite3"
    result = invoke("transfer", *XT_MOVE, "--journal", journal, env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not journal.exists()
