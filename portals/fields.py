"""A text field stored encrypted (MultiFernet over TOKEN_ENCRYPTION_KEYS).

The first key encrypts; every key decrypts, so keys can be rotated by putting a new key first
and running ``manage.py reencrypt_tokens``. A value no key can decrypt raises: ciphertext is never
handed back as if it were the token.
"""
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


# Every Fernet token starts with its version byte 0x80, base64: no Bitrix24 token looks like this.
_FERNET_PREFIX = "gAAAAA"


class TokenDecryptionError(Exception):
    """A stored token could not be decrypted with any configured key."""


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode() if isinstance(key, str) else key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.TOKEN_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise TokenDecryptionError(
            "A stored token cannot be decrypted with TOKEN_ENCRYPTION_KEYS "
            "(was the key that encrypted it removed?)."
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first key (a value already under it comes back re-encrypted)."""
    return fernet().rotate(ciphertext.encode()).decode()


class EncryptedTextField(models.TextField):
    """Stores a token encrypted; reads give the plain token. The empty string stays empty."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)

    def value_to_string(self, obj):
        """dumpdata writes the token encrypted, as it is stored: a dump is a copy at rest too."""
        value = self.value_from_object(obj)
        return value if value in (None, "") else encrypt(value)

    def to_python(self, value):
        """loaddata reads back what value_to_string wrote (a plain token passes unchanged)."""
        if isinstance(value, str) and value.startswith(_FERNET_PREFIX):
            return decrypt(value)
        return value
