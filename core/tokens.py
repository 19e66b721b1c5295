"""Bearer tokens for people and agents: random, prefixed, shown once, stored only as a hash.

A token reads `<kind>_<key id>_<secret>`. The key id finds the row; the SHA-256 of the whole token
is compared in constant time. Tokens carry 256 bits of randomness, so a fast hash is enough.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

USER_TOKEN_KIND = "gfu"  # noqa: S105 - a prefix, not a secret
AGENT_TOKEN_KIND = "gfa"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class IssuedToken:
    plaintext: str
    key_id: str
    digest: str


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(kind: str) -> IssuedToken:
    key_id = secrets.token_hex(6)
    plaintext = f"{kind}_{key_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(plaintext=plaintext, key_id=key_id, digest=digest_of(plaintext))


def key_id_of(token: str, kind: str) -> str | None:
    """The key id of a well-formed token of this kind, or None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != kind:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != 12 or not all(c in "0123456789abcdef" for c in key_id) or len(secret) < 32:
        return None
    return key_id


def matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(digest_of(token), digest)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or " " in value.strip():
        return None
    return value.strip()
