"""``tickcast token``: the tokens it prints verify as the server verifies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickcast.cli import main
from tickcast.edge.jwks import JwksKeys
from tickcast.edge.tokens import SecretKey, Verifier, parse_duration

from .edge.tokenkit import SECRET, ec_key, ed_key, jwks, rsa_key


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in ("TICKCAST_JWT_SECRET", "TICKCAST_JWT_AUDIENCE", "TICKCAST_JWT_ISSUER"):
        monkeypatch.delenv(name, raising=False)


def printed(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["token", *args]) == 0
    return capsys.readouterr().out.strip()


def test_a_token_from_the_secret_carries_the_claims_asked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HS256 with TICKCAST_JWT_SECRET, the server's aud and iss, streams and ttl."""
    monkeypatch.setenv("TICKCAST_JWT_SECRET", SECRET)
    monkeypatch.setenv("TICKCAST_JWT_AUDIENCE", "tickcast")
    token = printed(
        capsys, "--sub", "alice", "--streams", "BTCUSDT@*,*@ticker", "--ttl", "2h",
        "--max-subscriptions", "7",
    )  # fmt: skip
    grant = Verifier(SecretKey(SECRET), audience="tickcast").verify(token)
    assert grant.subject == "alice" and grant.max_subscriptions == 7
    assert grant.allows("BTCUSDT@trades") and grant.allows("ETHUSDT")
    assert not grant.allows("ETHUSDT@trades")


@pytest.mark.parametrize("pair", [rsa_key, ec_key, ed_key], ids=["RS256", "ES256", "EdDSA"])
def test_a_token_from_a_private_key_verifies_against_its_jwks(
    pair: object, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = pair()  # type: ignore[operator]
    pem = tmp_path / "private.pem"
    pem.write_bytes(key.private_pem())
    token = printed(capsys, "--sub", "bob", "--key", str(pem), "--kid", key.kid, "--ttl", "90s")
    keys = JwksKeys("jwks.json")
    keys.loaded(jwks(rsa_key(), ec_key(), ed_key()))
    assert Verifier(keys).verify(token).subject == "bob"


def test_without_a_key_it_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--sub", "alice"]) == 1
    assert "TICKCAST_JWT_SECRET" in capsys.readouterr().err


def test_durations() -> None:
    assert parse_duration("90") == parse_duration("90s") == 90
    assert parse_duration("30m") == 1800 and parse_duration("1h") == 3600
    assert parse_duration("7d") == 7 * 86400
    for bad in ("", "h", "-1h", "0", "nan", "inf", "1y"):
        with pytest.raises(ValueError):
            parse_duration(bad)
