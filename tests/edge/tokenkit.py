"""Tokens and keys for the token tests: signed ones, and the forgeries a server must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


def claims(sub: str = "alice", ttl: float = 3600, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time() + ttl), **extra}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """``alg: none``: a token anyone can make."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def hmac_with(secret: bytes, payload: dict[str, Any], **header: Any) -> str:
    """HS256 over ``secret`` whatever it is (PyJWT refuses to sign with a PEM key: the
    forger does not ask it)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@dataclass
class KeyPair:
    kid: str
    algorithm: str
    private: Any
    jwk: dict[str, Any] = field(default_factory=dict)

    def sign(self, payload: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(
            payload, self.private, algorithm=self.algorithm, headers={"kid": kid or self.kid}
        )

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def private_pem(self) -> bytes:
        return bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@cache
def rsa_key() -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pair("rsa-1", "RS256", private)


@cache
def ec_key() -> KeyPair:
    return _pair("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@cache
def ed_key() -> KeyPair:
    return _pair("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate())


def _pair(kid: str, algorithm: str, private: Any) -> KeyPair:
    algo = jwt.get_algorithm_by_name(algorithm)
    jwk = algo.to_jwk(private.public_key(), as_dict=True)
    return KeyPair(kid, algorithm, private, {**jwk, "kid": kid, "use": "sig"})


def jwks(*pairs: KeyPair) -> bytes:
    return json.dumps({"keys": [p.jwk for p in pairs]}).encode()
