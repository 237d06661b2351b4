"""Per-client tokens (JWT, RFC 7519): verifying one, and what its claims grant (SPEC §10).

Pure: no I/O and no ``await``. The keys come from a ``KeyRing`` (a shared secret, or the
keys of a JWKS that ``tickcast.edge.jwks`` keeps up to date), and a token is either a
``Grant`` or an ``AuthError`` naming why it was refused.

The algorithm is pinned by the key, never read from the token: RFC 8725 §3.1 ("libraries
MUST enable the caller to specify a supported set of algorithms and MUST NOT use any other
algorithms when performing cryptographic operations"), and §2.1 on the attack that reading
it allows, a token signed with HS256
using an RSA public key (known to all) as the HMAC secret. A secret verifies HS256 only;
an RSA key RS256 only, a P-256 key ES256, an Ed25519 key EdDSA; ``none`` never.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import jwt

from tickcast.messages.stream import ALL_TICKERS, stream_name

# A token is a few hundred bytes; far longer is no token of ours, refused before parsing
# (the request head limits keep longer ones from arriving at all on the fast path).
MAX_TOKEN_CHARS: Final = 8192
# Tokens remembered as verified (each a few hundred bytes, with its grant).
VERIFIED_CACHE: Final = 4096
# Seconds before ``exp`` at which a connection is told its token is expiring.
WARN_BEFORE: Final = 30.0
# The HMAC secret's least length: RFC 7518 §3.2, a key of at least the hash's size.
MIN_SECRET_BYTES: Final = 32


class Refusal(StrEnum):
    """Why a token (or a connection's use of one) was refused: the ``reason`` of a 401
    body and of an error reply, and the label of ``tickcast_auth_refused_total``."""

    MISSING = "missing"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    AUDIENCE = "audience"
    ISSUER = "issuer"
    UNKNOWN_KEY = "unknown_key"
    # Two different tokens in one request (header and query): refused, not guessed.
    AMBIGUOUS = "ambiguous"
    FORBIDDEN_STREAM = "forbidden_stream"
    SUBJECT_LIMIT = "subject_limit"
    # A refresh whose token names another subject than the connection's.
    SUBJECT_CHANGED = "subject_changed"


class AuthError(Exception):
    """A refused token: ``reason`` for counting and replies, ``message`` for people (never
    the token itself)."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StreamScope:
    """The streams a token's ``streams`` claim allows: patterns over stream names, where
    ``*`` matches any run of characters (``BTCUSDT@*``, ``*@ticker``, ``!tickers``). A bare
    symbol names its ticker, as everywhere in tickcast (``BTCUSDT`` is ``BTCUSDT@ticker``);
    symbols match without regard to case, as clients may write them."""

    __slots__ = ("_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        alternatives = "|".join(_pattern_regex(p) for p in self.patterns)
        self._regex = re.compile(f"(?:{alternatives})\\Z") if self.patterns else None

    def allows(self, key: str) -> bool:
        """Whether the stream ``key`` (a served stream's key) is one of the patterns'."""
        return self._regex is not None and self._regex.match(stream_name(key)) is not None

    def split(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        """``keys`` as (allowed, forbidden), each in the order given."""
        allowed: list[str] = []
        forbidden: list[str] = []
        for key in keys:
            (allowed if self.allows(key) else forbidden).append(key)
        return allowed, forbidden


def _pattern_regex(pattern: str) -> str:
    pattern = pattern.strip()
    if pattern == ALL_TICKERS:
        return re.escape(pattern)
    symbol, at, kind = pattern.partition("@")
    name = f"{symbol.upper()}@{kind}" if at else f"{symbol.upper()}@ticker"
    return ".*".join(re.escape(part) for part in name.split("*"))


@dataclass(frozen=True)
class Grant:
    """What a verified token grants one connection."""

    subject: str
    # ``exp``, Unix seconds.
    expires_at: float
    # None: every stream (no ``streams`` claim).
    scope: StreamScope | None = None
    # The ``max_subscriptions`` claim, None when absent (the server's limit applies).
    max_subscriptions: int | None = None

    def allows(self, key: str) -> bool:
        return self.scope is None or self.scope.allows(key)

    def subscription_limit(self, server_limit: int) -> int:
        if self.max_subscriptions is None:
            return server_limit
        return min(server_limit, self.max_subscriptions)


@dataclass(frozen=True)
class VerifyKey:
    """One key a token may be signed with, and the one algorithm it verifies."""

    algorithm: str
    key: object


class KeyRing(Protocol):
    """Where the verifying key of a token comes from: by its header's ``kid``."""

    @property
    def generation(self) -> int:
        """Changes whenever the keys do: a token verified with the old ones is checked
        again."""

    def key_for(self, kid: str | None) -> VerifyKey | None:
        """The key named ``kid`` (None: the token names none); None when unknown."""


@dataclass(frozen=True)
class SecretKey:
    """``TICKCAST_JWT_SECRET``: one HMAC secret, HS256 only, whatever ``kid`` says."""

    secret: str
    generation: int = 0

    def key_for(self, kid: str | None) -> VerifyKey | None:
        return VerifyKey("HS256", self.secret.encode())


class Verifier:
    """Checks tokens against a ``KeyRing`` and the configured claims.

    ``exp`` and ``sub`` are required (PyJWT requires nothing by default, and a token with
    no ``exp`` would be good forever); ``aud`` and ``iss`` are checked when configured.
    """

    def __init__(
        self,
        keys: KeyRing,
        *,
        audience: str = "",
        issuer: str = "",
        leeway: float = 30.0,
        on_unknown_key: Callable[[], None] | None = None,
    ) -> None:
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self._verified: dict[str, Grant] = {}
        self._generation = keys.generation
        # Told of a token signed by a key the ring does not hold (a JWKS may have rotated).
        self._on_unknown_key = on_unknown_key

    def verify(self, token: str) -> Grant:
        """The grant of ``token``; ``AuthError`` when it is refused.

        A token verified before is not verified again while the keys are the same: a
        client reconnecting with its token, or many clients of one, cost a lookup (PyJWT
        spends some 0.2 ms on each, mostly checking base64 characters in Python). Its
        expiry is still checked each time.
        """
        if self._generation != self.keys.generation:
            self._verified.clear()
            self._generation = self.keys.generation
        grant = self._verified.get(token)
        if grant is not None:
            if time.time() > grant.expires_at + self.leeway:
                del self._verified[token]
                raise AuthError(Refusal.EXPIRED, "token expired")
            return grant
        grant = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.pop(next(iter(self._verified)))  # the oldest
        self._verified[token] = grant
        return grant

    def _verify(self, token: str) -> Grant:
        if not token:
            raise AuthError(Refusal.MISSING, "a token is required")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(Refusal.MALFORMED, f"token longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError(Refusal.MALFORMED, "not a JWT") from None
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(Refusal.MALFORMED, "kid must be a string")
        key = self.keys.key_for(kid)
        if key is None:
            if self._on_unknown_key is not None:
                self._on_unknown_key()
            raise AuthError(Refusal.UNKNOWN_KEY, "token signed by an unknown key")
        claims = self._decode(token, key)
        return _grant(claims)

    def _decode(self, token: str, key: VerifyKey) -> dict[str, object]:
        options: dict[str, object] = {
            "require": ["exp", "sub"],
            "verify_aud": bool(self.audience),
            "verify_iss": bool(self.issuer),
        }
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key.key,  # type: ignore[arg-type]
                algorithms=[key.algorithm],
                audience=self.audience or None,
                issuer=self.issuer or None,
                leeway=self.leeway,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.InvalidTokenError as exc:
            raise _refusal(exc) from None
        return claims


def _refusal(exc: jwt.InvalidTokenError) -> AuthError:
    """PyJWT's exception as a named refusal; the message never quotes the token."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthError(Refusal.EXPIRED, "token expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return AuthError(Refusal.NOT_YET_VALID, "token not valid yet (nbf or iat)")
    if isinstance(exc, jwt.InvalidAudienceError):
        return AuthError(Refusal.AUDIENCE, "token not meant for this server (aud)")
    if isinstance(exc, jwt.InvalidIssuerError):
        return AuthError(Refusal.ISSUER, "token from another issuer (iss)")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError(Refusal.MALFORMED, f"token has no {exc.claim!r} claim")
    if isinstance(exc, jwt.InvalidSignatureError | jwt.InvalidAlgorithmError):
        # A wrong algorithm is a signature this key does not make: "none", or HS256 made
        # with an RSA public key for a secret.
        return AuthError(Refusal.BAD_SIGNATURE, "bad signature")
    if isinstance(exc, jwt.InvalidKeyError):
        return AuthError(Refusal.BAD_SIGNATURE, "bad signature")
    return AuthError(Refusal.MALFORMED, "malformed token")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(Refusal.MALFORMED, "exp must be a number")
    return float(value)


def _grant(claims: dict[str, object]) -> Grant:
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthError(Refusal.MALFORMED, "sub must be a non-empty string")
    streams = claims.get("streams")
    scope = None
    if streams is not None:
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            raise AuthError(Refusal.MALFORMED, "streams must be a list of strings")
        scope = StreamScope(streams)
    limit = claims.get("max_subscriptions")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise AuthError(Refusal.MALFORMED, "max_subscriptions must be a whole number >= 0")
    return Grant(subject, _number(claims["exp"]), scope, limit)


def offered_token(authorization: str | None, token_param: str | None) -> str | None:
    """The token a request offers: its ``Authorization: Bearer`` credential or its
    ``?token=``; None when it offers none. Two different ones are refused (``AMBIGUOUS``):
    which one the client meant is not for the server to guess."""
    header = None
    if authorization and authorization[:7].lower() == "bearer ":
        header = authorization[7:].strip() or None
    if header is not None and token_param and token_param != header:
        raise AuthError(Refusal.AMBIGUOUS, "two different tokens: send one")
    return header if header is not None else (token_param or None)


def signing_algorithm(key: object) -> str:
    """The algorithm a private key signs with, by its type (as verifying pins it)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ValueError("expected an RSA, P-256 or Ed25519 private key")


def mint(
    key: str | object,
    subject: str,
    ttl: float,
    *,
    streams: list[str] | None = None,
    max_subscriptions: int | None = None,
    audience: str = "",
    issuer: str = "",
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """A signed token: HS256 with a secret (``str``), else by the private key's type."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": subject, "iat": issued, "exp": issued + int(ttl)}
    if streams is not None:
        claims["streams"] = streams
    if max_subscriptions is not None:
        claims["max_subscriptions"] = max_subscriptions
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    if isinstance(key, str):
        return jwt.encode(claims, key.encode(), algorithm="HS256")
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=signing_algorithm(key), headers=headers)  # type: ignore[arg-type]


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` as seconds; ValueError when it is none."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 1h or 7d") from None
    if not 0 < value < 10 * 365 * 86400:
        raise ValueError(f"{text!r}: a duration must be positive (and under ten years)")
    return value
