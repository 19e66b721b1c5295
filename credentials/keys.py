"""Encryption at rest: Fernet keys from `CREDENTIAL_KEYS`; the first encrypts, all decrypt."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from core.exceptions import DomainError

MAKE_A_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class KeysUnavailable(DomainError):
    """No usable key: the server runs, but cannot store or read a secret until one is set."""

    status = 503
    code = "credential_keys_missing"


class UndecryptableSecret(DomainError):
    """A stored secret that none of the configured keys opens (its key was dropped too early)."""

    status = 503
    code = "credential_key_unknown"


def configured_keys() -> list[str]:
    """The keys in `CREDENTIAL_KEYS`, first (the one that encrypts) first."""
    return [key.strip() for key in settings.CREDENTIAL_KEYS if key.strip()]


def key_problems(keys: list[str]) -> list[str]:
    """Why each malformed key is refused, by its position (never its value)."""
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            problems.append(
                f"CREDENTIAL_KEYS entry {position} is not a Fernet key "
                "(32 bytes in URL-safe base64, 44 characters)."
            )
    return problems


def _fernets() -> list[Fernet]:
    keys = configured_keys()
    if not keys:
        raise KeysUnavailable(
            "Git credentials cannot be stored: the server has no encryption key. Set "
            f"CREDENTIAL_KEYS to a Fernet key, made with: {MAKE_A_KEY}"
        )
    problems = key_problems(keys)
    if problems:
        raise KeysUnavailable(" ".join(problems) + f" Make a key with: {MAKE_A_KEY}")
    return [Fernet(key) for key in keys]


def require_keys() -> None:
    """Raises `KeysUnavailable` unless a secret could be encrypted now."""
    _fernets()


def encrypt(plaintext: str) -> str:
    return MultiFernet(_fernets()).encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return MultiFernet(_fernets()).decrypt(ciphertext.encode("ascii")).decode()
    except InvalidToken:
        raise UndecryptableSecret(
            "A stored secret cannot be decrypted with any key in CREDENTIAL_KEYS; put back "
            "the key it was encrypted with, then run `manage.py rotate_credential_keys`."
        ) from None


def is_under_first_key(ciphertext: str) -> bool:
    """Whether the first key already opens `ciphertext`, so rotation can leave it alone."""
    try:
        _fernets()[0].decrypt(ciphertext.encode("ascii"))
    except InvalidToken:
        return False
    return True


def reencrypt(ciphertext: str) -> str:
    """The same secret encrypted with the first key (`MultiFernet.rotate`)."""
    try:
        return MultiFernet(_fernets()).rotate(ciphertext.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise UndecryptableSecret(
            "A stored secret cannot be decrypted with any key in CREDENTIAL_KEYS."
        ) from None
