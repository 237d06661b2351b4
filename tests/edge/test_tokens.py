"""Token verification, stream patterns, the JWKS key ring and the expiry wheel: plain calls."""

from __future__ import annotations

import json
import time

import pytest

from tickcast.edge.access import ExpiryWheel
from tickcast.edge.jwks import MISS_REFETCH_EVERY, JwksError, JwksKeys, parse_jwks
from tickcast.edge.tokens import (
    MAX_TOKEN_CHARS,
    AuthError,
    Refusal,
    SecretKey,
    StreamScope,
    Verifier,
    offered_token,
)

from .tokenkit import (
    SECRET,
    claims,
    ec_key,
    ed_key,
    hmac_with,
    hs256,
    jwks,
    rsa_key,
    unsigned,
)


def hs_verifier(**options: object) -> Verifier:
    return Verifier(SecretKey(SECRET), **options)  # type: ignore[arg-type]


def jwks_verifier(document: bytes, **options: object) -> tuple[Verifier, JwksKeys]:
    keys = JwksKeys("keys.json")
    keys.loaded(document)
    return Verifier(keys, on_unknown_key=keys.missed, **options), keys  # type: ignore[arg-type]


def refusal(verifier: Verifier, token: str) -> Refusal:
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert not token or token not in refused.value.message
    return refused.value.reason


def test_a_good_token_grants_its_claims() -> None:
    """sub, exp, streams and max_subscriptions come out of a valid HS256 token."""
    token = hs256(claims(streams=["BTCUSDT@*"], max_subscriptions=5))
    grant = hs_verifier().verify(token)
    assert grant.subject == "alice"
    assert grant.expires_at > time.time()
    assert grant.allows("BTCUSDT@trades") and not grant.allows("ETHUSDT")
    assert grant.subscription_limit(200) == 5 and grant.subscription_limit(3) == 3


def test_alg_none_is_refused() -> None:
    """An unsigned token is no signature of the key's."""
    assert refusal(hs_verifier(), unsigned(claims())) is Refusal.BAD_SIGNATURE


def test_hs256_signed_with_the_rsa_public_key_is_refused() -> None:
    """Key confusion: HS256 with the (public) RSA key's PEM as the secret, against a JWKS."""
    verifier, _ = jwks_verifier(jwks(rsa_key()))
    forged = hmac_with(rsa_key().public_pem(), claims(), kid=rsa_key().kid)
    assert refusal(verifier, forged) is Refusal.BAD_SIGNATURE


def test_a_token_without_exp_is_refused() -> None:
    """exp is required: without it a token would be good forever."""
    assert refusal(hs_verifier(), hs256({"sub": "alice"})) is Refusal.MALFORMED


def test_a_token_without_sub_is_refused() -> None:
    assert refusal(hs_verifier(), hs256({"exp": int(time.time()) + 60})) is Refusal.MALFORMED


def test_expiry_takes_the_leeway_into_account() -> None:
    """Past exp by less than the leeway: admitted; by more: expired."""
    token = hs256(claims(ttl=-10))
    assert hs_verifier(leeway=30).verify(token).subject == "alice"
    assert refusal(hs_verifier(leeway=5), token) is Refusal.EXPIRED


def test_a_token_not_valid_yet_is_refused() -> None:
    token = hs256(claims(nbf=int(time.time()) + 600))
    assert refusal(hs_verifier(leeway=0), token) is Refusal.NOT_YET_VALID


def test_audience_and_issuer_are_checked_when_configured() -> None:
    """A wrong aud or iss is refused by name; unset, neither is checked."""
    token = hs256(claims(aud="other", iss="someone"))
    assert refusal(hs_verifier(audience="tickcast"), token) is Refusal.AUDIENCE
    assert refusal(hs_verifier(issuer="https://idp.example"), token) is Refusal.ISSUER
    assert refusal(hs_verifier(audience="tickcast"), hs256(claims())) is Refusal.MALFORMED
    good = hs256(claims(aud="tickcast", iss="https://idp.example"))
    verifier = hs_verifier(audience="tickcast", issuer="https://idp.example")
    assert verifier.verify(good).subject == "alice"
    assert hs_verifier().verify(token).subject == "alice"


def test_a_partial_issuer_is_not_the_issuer() -> None:
    """iss is compared whole (GHSA-75c5-xw7c-p5pm)."""
    token = hs256(claims(iss="https://idp.example.evil"))
    assert refusal(hs_verifier(issuer="https://idp.example"), token) is Refusal.ISSUER


def test_a_wrong_secret_is_a_bad_signature() -> None:
    token = hs256(claims(), secret="another-secret-of-at-least-32-bytes!!")
    assert refusal(hs_verifier(), token) is Refusal.BAD_SIGNATURE


def test_garbage_and_huge_tokens_are_malformed() -> None:
    """Not a JWT, or longer than any token: refused before any parsing of claims."""
    verifier = hs_verifier()
    assert refusal(verifier, "not-a-token") is Refusal.MALFORMED
    started = time.perf_counter()
    assert refusal(verifier, "a" * (100 * 1024)) is Refusal.MALFORMED
    assert time.perf_counter() - started < 0.05
    assert refusal(verifier, "a" * (MAX_TOKEN_CHARS + 1)) is Refusal.MALFORMED
    assert refusal(verifier, "") is Refusal.MISSING


def test_claims_of_the_wrong_type_are_malformed() -> None:
    verifier = hs_verifier()
    assert refusal(verifier, hs256(claims(streams="BTCUSDT@*"))) is Refusal.MALFORMED
    assert refusal(verifier, hs256(claims(max_subscriptions="5"))) is Refusal.MALFORMED
    assert refusal(verifier, hs256(claims(sub=""))) is Refusal.MALFORMED


@pytest.mark.parametrize("pair", [rsa_key, ec_key, ed_key], ids=["RS256", "ES256", "EdDSA"])
def test_each_jwks_key_type_verifies_its_own_algorithm(pair: object) -> None:
    """RS256, ES256 and EdDSA tokens verify against their key in the set, chosen by kid."""
    key = pair()  # type: ignore[operator]
    verifier, _ = jwks_verifier(jwks(rsa_key(), ec_key(), ed_key()))
    assert verifier.verify(key.sign(claims())).subject == "alice"


def test_a_token_signed_by_one_key_but_naming_another_is_refused() -> None:
    verifier, _ = jwks_verifier(jwks(rsa_key(), ec_key()))
    forged = ec_key().sign(claims(), kid=rsa_key().kid)
    assert refusal(verifier, forged) is Refusal.BAD_SIGNATURE


def test_an_unknown_kid_is_refused_and_asks_for_a_refetch_once_a_minute() -> None:
    """A kid not in the set: unknown_key, and the fetcher is cued at most once a minute."""
    now = [1000.0]
    keys = JwksKeys("keys.json", clock=lambda: now[0])
    keys.loaded(jwks(rsa_key()))
    verifier = Verifier(keys, on_unknown_key=keys.missed)
    token = rsa_key().sign(claims(), kid="rotated-in")
    assert refusal(verifier, token) is Refusal.UNKNOWN_KEY
    assert not keys.wanted  # loaded just now
    now[0] += MISS_REFETCH_EVERY
    assert refusal(verifier, token) is Refusal.UNKNOWN_KEY
    assert keys.wanted


def test_a_failed_fetch_keeps_the_keys_and_says_so() -> None:
    keys = JwksKeys("https://idp.example/jwks")
    keys.loaded(jwks(rsa_key()))
    keys.failed("ConnectError")
    status = keys.status()
    assert status["state"] == "stale" and status["keys"] == 1
    assert status["error"] == "ConnectError"
    assert keys.key_for(rsa_key().kid) is not None
    with pytest.raises(JwksError):
        keys.loaded(b'{"keys": []}')
    assert keys.key_for(rsa_key().kid) is not None


def test_symmetric_and_mislabelled_keys_in_a_jwks_are_skipped() -> None:
    """An oct key (a published secret) and a key whose alg is not its type's are not used."""
    mislabelled = {**rsa_key().jwk, "kid": "odd", "alg": "HS256"}
    document = json.dumps(
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, mislabelled, ec_key().jwk]}
    ).encode()
    keys, skipped = parse_jwks(document)
    assert list(keys) == [ec_key().kid] and skipped == 2
    with pytest.raises(JwksError):
        parse_jwks(b"<html>")


def test_stream_patterns() -> None:
    """``*`` patterns over stream names; a bare symbol is its ticker; symbols ignore case."""
    scope = StreamScope(["btcusdt@*", "*@ticker", "!tickers"])
    assert scope.allows("BTCUSDT@trades") and scope.allows("BTCUSDT")
    assert scope.allows("ETHUSDT") and scope.allows("!tickers")
    assert not scope.allows("ETHUSDT@trades")
    assert StreamScope(["ETHUSDT"]).allows("ETHUSDT")
    assert not StreamScope(["ETHUSDT"]).allows("ETHUSDT@trades")
    assert not StreamScope([]).allows("BTCUSDT")
    # Regex characters in a pattern are literal.
    assert not StreamScope(["BTC.SDT"]).allows("BTCUSDT")
    assert scope.split(["BTCUSDT", "ETHUSDT@kline_1m"]) == (["BTCUSDT"], ["ETHUSDT@kline_1m"])


def test_two_different_tokens_in_one_request_are_refused() -> None:
    assert offered_token("Bearer abc", None) == "abc"
    assert offered_token(None, "abc") == "abc"
    assert offered_token("Bearer abc", "abc") == "abc"
    assert offered_token("Basic xyz", None) is None
    with pytest.raises(AuthError) as refused:
        offered_token("Bearer abc", "def")
    assert refused.value.reason is Refusal.AMBIGUOUS


def test_the_expiry_wheel_gives_what_came_due_in_order() -> None:
    wheel = ExpiryWheel()
    wheel.schedule(1, 105.5)
    wheel.schedule(2, 100.2)
    wheel.schedule(3, 100.1)
    wheel.schedule(4, 100.9)
    wheel.cancel(4)
    assert wheel.due(100.0) == []
    assert wheel.due(100.5) == [3, 2]
    wheel.schedule(1, 101.0)  # moved earlier
    assert wheel.due(102.0) == [1]
    assert len(wheel) == 0 and wheel.due(1e9) == []


def test_a_token_verified_once_is_remembered_until_it_expires_or_the_keys_change() -> None:
    """The second verification of one token is a lookup, still held to exp; new keys in
    the JWKS make it verify again (and a removed key refuse it)."""
    verifier, keys = jwks_verifier(jwks(rsa_key(), ec_key()))
    token = ec_key().sign(claims(ttl=3600))
    assert verifier.verify(token) is verifier.verify(token)
    keys.loaded(jwks(rsa_key()))  # the EC key withdrawn
    assert refusal(verifier, token) is Refusal.UNKNOWN_KEY
    short = hs256(claims(ttl=1))
    hs = hs_verifier(leeway=0)
    hs.verify(short)
    time.sleep(2.1)
    assert refusal(hs, short) is Refusal.EXPIRED
