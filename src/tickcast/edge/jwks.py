"""``TICKCAST_JWT_JWKS``: the public keys tokens are signed with, from a JWKS file or URL.

``JwksKeys`` is the key ring (pure: a JWKS document in, keys by ``kid`` out); ``JwksFetcher``
is its driver, a task that loads the document at start, again every ``REFRESH_EVERY``
seconds, and sooner when a token names a ``kid`` the ring lacks (a key rotated in), at most
once per ``MISS_REFETCH_EVERY`` seconds: random ``kid``s cannot make it fetch more. A fetch
never blocks the event loop (httpx's async client; a file is read in a thread), and a fetch
that fails keeps the keys held and says so in ``/status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx
import jwt

from tickcast.edge.tokens import VerifyKey

log = logging.getLogger(__name__)

REFRESH_EVERY: Final = 3600.0
MISS_REFETCH_EVERY: Final = 60.0
FETCH_TIMEOUT: Final = 5.0
# A JWKS of a few keys is a few KB; a larger answer is not one.
MAX_DOCUMENT_BYTES: Final = 1 << 20


def pinned_algorithm(jwk: dict[str, object]) -> str | None:
    """The one algorithm a JWK verifies, by its key type (RFC 8725 §3.1); None for keys
    tickcast does not take: symmetric ones (``oct``: a secret published in a key set is
    no secret) and curves other than P-256 and Ed25519."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and crv == "P-256":
        algorithm = "ES256"
    elif kty == "OKP" and crv == "Ed25519":
        algorithm = "EdDSA"
    else:
        return None
    stated = jwk.get("alg")
    if stated is not None and stated != algorithm:
        return None  # a key that says it is for another algorithm is not used for this one
    return algorithm


class JwksError(ValueError):
    """A JWKS document that cannot be used."""


def parse_jwks(document: bytes) -> tuple[dict[str | None, VerifyKey], int]:
    """The usable keys of a JWKS document by ``kid`` (a key with none under None), and how
    many keys were skipped. ``JwksError`` when it is no key set at all."""
    try:
        body = json.loads(document)
    except ValueError:
        raise JwksError("not JSON") from None
    entries = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise JwksError('no "keys" list')
    keys: dict[str | None, VerifyKey] = {}
    skipped = 0
    for entry in entries:
        algorithm = pinned_algorithm(entry) if isinstance(entry, dict) else None
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if algorithm is None or (kid is not None and not isinstance(kid, str)):
            skipped += 1
            continue
        if entry.get("use", "sig") != "sig":
            skipped += 1
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=algorithm).key
        except jwt.PyJWKError:
            skipped += 1
            continue
        keys[kid] = VerifyKey(algorithm, key)
    return keys, skipped


class JwksKeys:
    """The keys of the last good JWKS, and what became of the fetches since."""

    def __init__(self, source: str, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self._clock = clock
        self._keys: dict[str | None, VerifyKey] = {}
        self.skipped = 0
        self.loaded_at: float | None = None
        self.attempted_at: float | None = None
        self.error: str | None = None
        self.fetches = 0
        self.failures = 0
        self.generation = 0
        # Set when a token names a kid not held: the fetcher's cue.
        self.wanted = False

    def key_for(self, kid: str | None) -> VerifyKey | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            # A token naming no key, verified by the set's only key (as its issuer meant).
            key = next(iter(self._keys.values()))
        return key

    def missed(self) -> None:
        """A token named a key not held: fetch again, unless a fetch was tried within
        ``MISS_REFETCH_EVERY`` seconds."""
        if self.attempted_at is None or self._clock() - self.attempted_at >= MISS_REFETCH_EVERY:
            self.wanted = True

    def loaded(self, document: bytes) -> None:
        """A fetched document: its keys replace the held ones; ``JwksError`` (keys kept)
        when it has no usable key."""
        self.attempted_at = self._clock()
        self.fetches += 1
        try:
            keys, skipped = parse_jwks(document)
            if not keys:
                raise JwksError("no usable key (RS256, ES256 or EdDSA)")
        except JwksError as exc:
            self.failed(str(exc), counted=False)
            raise
        if keys != self._keys:
            self.generation += 1
        self._keys, self.skipped = keys, skipped
        self.loaded_at = self.attempted_at
        self.error = None

    def failed(self, error: str, *, counted: bool = True) -> None:
        """A fetch that failed: the keys held are kept."""
        if counted:
            self.attempted_at = self._clock()
            self.fetches += 1
        self.failures += 1
        self.error = error

    def status(self) -> dict[str, object]:
        if self.loaded_at is None:
            state = "failed" if self.error else "loading"
        else:
            state = "stale" if self.error else "ok"
        return {
            "state": state,
            "keys": len(self._keys),
            "skipped": self.skipped,
            "loaded_at": self.loaded_at,
            "error": self.error,
            "fetches": self.fetches,
            "failures": self.failures,
        }


class JwksFetcher:
    """Keeps a ``JwksKeys`` loaded from its source; ``run`` is the edge's task."""

    def __init__(self, keys: JwksKeys, *, poll: float = 1.0) -> None:
        self.keys = keys
        self._poll = poll

    async def run(self) -> None:
        next_refresh = 0.0
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
            while True:
                now = time.monotonic()
                if now >= next_refresh or self.keys.wanted:
                    self.keys.wanted = False
                    await self.fetch(client)
                    next_refresh = now + REFRESH_EVERY
                await asyncio.sleep(self._poll)

    async def fetch(self, client: httpx.AsyncClient) -> None:
        source = self.keys.source
        try:
            document = await self._read(client, source)
        except (OSError, httpx.HTTPError, httpx.InvalidURL, JwksError) as exc:
            # The class alone: an HTTP error's text quotes the URL, query and all.
            problem = str(exc) if isinstance(exc, JwksError) else type(exc).__name__
            self.keys.failed(problem)
            log.warning("JWKS %s not read (%s); keeping the keys held", _shown(source), problem)
            return
        try:
            self.keys.loaded(document)
        except JwksError as exc:
            log.warning("JWKS %s unusable (%s); keeping the keys held", _shown(source), exc)

    async def _read(self, client: httpx.AsyncClient, source: str) -> bytes:
        if not source.startswith(("http://", "https://")):
            return await asyncio.to_thread(_read_file, Path(source))
        response = await client.get(source)
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise JwksError("document too large")
        return response.content


def _read_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise JwksError("document too large")
    return data


def _shown(source: str) -> str:
    """The source as logged: a URL without its query (which may carry a credential)."""
    return source.split("?", 1)[0]
