"""Venue configuration is refused at construction: credentials and base URL, never echoing
a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

import xferkit
from xferkit import HTX, XT, InvalidRequestError
from xferkit.cli._app import app

KEY = "cfg-key-0000-visible"
SECRET = "cfg-secret-do-not-leak-3f9a"

# Where a request would go if a check were missing: refused at once, never the real venue.
NOWHERE = "http://127.0.0.1:9"

VENUES: list[tuple[type[Any], str]] = [(XT, "api_key"), (HTX, "access_key")]

BAD_CREDENTIALS = [
    pytest.param("", "is empty", id="empty"),
    pytest.param("{}\n", "white space", id="trailing-newline"),
    pytest.param(" {}", "white space", id="leading-space"),
    pytest.param("{}\r\n", "white space", id="crlf"),
    pytest.param("ab\x00{}", "control character", id="nul"),
    pytest.param("ab\t{}", "control character", id="tab-inside"),
    pytest.param("ab\u200b{}", "control character", id="zero-width-space"),
]


def build(venue: type[Any], key_field: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {key_field: KEY, "secret": SECRET}
    values.update(overrides)
    return venue(values.pop(key_field), values.pop("secret"), **values)


@pytest.mark.parametrize(("venue", "key_field"), VENUES)
@pytest.mark.parametrize(("template", "says"), BAD_CREDENTIALS)
@pytest.mark.parametrize("which", ["key", "secret"])
def test_a_bad_credential_is_refused_naming_the_field_not_the_value(
    venue: type[Any], key_field: str, template: str, says: str, which: str
) -> None:
    """An empty, padded or control-character key or secret: InvalidRequestError that names
    the field and shows neither the key nor the secret."""
    field = key_field if which == "key" else "secret"
    original = KEY if which == "key" else SECRET
    value = template.format(original)
    with pytest.raises(InvalidRequestError) as refused:
        build(venue, key_field, **{field: value})
    message = str(refused.value)
    assert message.startswith(f"{field} ")
    assert says in message
    assert SECRET not in message
    assert KEY not in message
    assert "cfg-" not in repr(refused.value)


@pytest.mark.parametrize(("venue", "key_field"), VENUES)
@pytest.mark.parametrize("value", [None, 123, b"bytes-key"])
def test_a_credential_that_is_not_a_str_is_refused(
    venue: type[Any], key_field: str, value: object
) -> None:
    """A non-string credential is refused by type, before anything signs with it."""
    with pytest.raises(InvalidRequestError, match="must be a str"):
        build(venue, key_field, secret=value)


@pytest.mark.parametrize(("venue", "key_field"), VENUES)
@pytest.mark.parametrize(
    "url",
    [
        "sapi.xt.com",
        "ftp://sapi.xt.com",
        "https://",
        "https:///v4",
        "http//sapi.xt.com",
        "https://sapi.xt.com\n",
        " https://sapi.xt.com",
        "https://sapi xt.com",
        "https://sapi.xt.com:99999",
        "https://sapi.xt.com?proxy=1",
        "https://sapi.xt.com#frag",
        "",
    ],
)
def test_a_base_url_that_is_not_an_absolute_http_url_is_refused(
    venue: type[Any], key_field: str, url: str
) -> None:
    """base_url must be an absolute http(s) URL with a host; the error names base_url."""
    with pytest.raises(InvalidRequestError, match=r"^base_url "):
        build(venue, key_field, base_url=url)


@pytest.mark.parametrize(("venue", "key_field"), VENUES)
def test_a_base_url_with_credentials_is_refused_without_showing_them(
    venue: type[Any], key_field: str
) -> None:
    """user:password@ in base_url is refused, and the message leaves the password out."""
    with pytest.raises(InvalidRequestError, match=r"^base_url ") as refused:
        build(venue, key_field, base_url="https://me:hunter2@sapi.xt.com")
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("venue", "key_field"), VENUES)
@pytest.mark.parametrize(
    "url",
    [
        "https://sapi.xt.com",
        "https://api-aws.huobi.pro/",
        "http://127.0.0.1:8123",
        "https://proxy.example:8443/xt",
        "HTTPS://API.HUOBI.PRO",
    ],
)
def test_good_configuration_is_accepted(venue: type[Any], key_field: str, url: str) -> None:
    """Ordinary keys, secrets and http(s) base URLs (ports, paths, a trailing slash) pass."""
    configured = build(venue, key_field, base_url=url)
    assert configured.base_url == url.rstrip("/")
    assert SECRET not in repr(configured)


@pytest.mark.parametrize(
    ("venue", "variables"),
    [
        (XT, ("XFERKIT_XT_API_KEY", "XFERKIT_XT_SECRET")),
        (HTX, ("XFERKIT_HTX_ACCESS_KEY", "XFERKIT_HTX_SECRET")),
    ],
)
def test_from_env_names_the_variable_with_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, venue: type[Any], variables: tuple[str, str]
) -> None:
    """A secret read from a file with its newline: from_env() names the variable, not the value."""
    key_var, secret_var = variables
    monkeypatch.setenv(key_var, KEY)
    monkeypatch.setenv(secret_var, SECRET + "\n")
    with pytest.raises(InvalidRequestError) as refused:
        venue.from_env()
    assert str(refused.value).startswith(f"{secret_var} has leading or trailing white space")
    assert SECRET not in str(refused.value)


def test_the_cli_reports_a_bad_secret_cleanly_without_it(tmp_path: Path) -> None:
    """`xferkit transfer` with a newline-terminated secret exits 2 with a one-line reason
    naming the variable; no traceback, no secret, and no journal is written."""
    journal = tmp_path / "journal.sqlite3"
    env = {
        "XFERKIT_XT_API_KEY": KEY,
        "XFERKIT_XT_SECRET": SECRET + "\n",
        "XFERKIT_XT_BASE_URL": NOWHERE,
        "XFERKIT_JOURNAL": str(journal),
        "HOME": str(tmp_path),
    }
    result = CliRunner().invoke(
        app,
        ["transfer", "xt", "usdt", "1", "--from", "spot", "--to", "usdt_futures", "--key", "k1"],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert "XFERKIT_XT_SECRET" in result.output
    assert "Traceback" not in result.output
    assert SECRET not in result.output
    assert not journal.exists()


def test_the_module_transfer_refuses_before_any_journal_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """xferkit.transfer() with a padded key from the environment raises InvalidRequestError
    before opening (and so before writing) its journal."""
    monkeypatch.setenv("XFERKIT_XT_API_KEY", KEY + " ")
    monkeypatch.setenv("XFERKIT_XT_SECRET", SECRET)
    monkeypatch.setenv("XFERKIT_XT_BASE_URL", NOWHERE)
    journal = tmp_path / "journal.sqlite3"
    monkeypatch.setenv("XFERKIT_JOURNAL", str(journal))
    monkeypatch.setenv("HOME", str(tmp_path))

    async def call() -> None:
        await xferkit.transfer(
            "xt", currency="usdt", amount="1", from_account="spot", to_account="usdt_futures"
        )

    with pytest.raises(InvalidRequestError, match=r"^XFERKIT_XT_API_KEY "):
        anyio.run(call)
    assert not journal.exists()
    assert not (tmp_path / ".xferkit").exists()
