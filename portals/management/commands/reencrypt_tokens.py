"""manage.py reencrypt_tokens: after putting a new key first in TOKEN_ENCRYPTION_KEYS, re-encrypt
every stored token with it, so the old keys can be removed without losing a token."""
from __future__ import annotations

from collections import Counter

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from portals.fields import EncryptedTextField, rotate

BATCH = 500


def encrypted_columns():
    """(model, field) for every encrypted field of every installed model."""
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


def _stored_values(model, field):
    """(pk, ciphertext) of every non-empty value, read raw (the field would decrypt it)."""
    quote = connection.ops.quote_name
    table, column, pk = quote(model._meta.db_table), quote(field.column), quote(model._meta.pk.column)
    last = None
    while True:
        with connection.cursor() as cursor:
            after = f"AND {pk} > %s" if last is not None else ""
            cursor.execute(
                f"SELECT {pk}, {column} FROM {table} WHERE {column} <> '' {after} ORDER BY {pk} LIMIT {BATCH}",
                [last] if last is not None else [],
            )
            rows = cursor.fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def _replace(model, field, pk, old: str, new: str) -> bool:
    """Write ``new`` only if the row still holds ``old``: a refresh that ran meanwhile wins."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {quote(field.column)} = %s "
            f"WHERE {quote(model._meta.pk.column)} = %s AND {quote(field.column)} = %s",
            [new, pk, old],
        )
        return cursor.rowcount == 1


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored token with the first key of TOKEN_ENCRYPTION_KEYS. Idempotent: a "
        "token already under that key is left alone. Exit 1 if a token cannot be decrypted."
    )

    def handle(self, *args, **options):
        current = Fernet(settings.TOKEN_ENCRYPTION_KEYS[0])
        total = Counter()
        for model, field in encrypted_columns():
            counts = Counter()
            for pk, ciphertext in _stored_values(model, field):
                try:
                    current.decrypt(ciphertext.encode())
                    counts["already under the first key"] += 1
                    continue
                except InvalidToken:
                    pass
                try:
                    rotated = rotate(ciphertext)
                except InvalidToken:
                    counts["unreadable"] += 1
                    continue
                counts["re-encrypted" if _replace(model, field, pk, ciphertext, rotated) else "changed meanwhile"] += 1
            self.stdout.write(f"{model._meta.label}.{field.name}: {_summary(counts)}")
            total.update(counts)
        self.stdout.write(f"total: {_summary(total)}")
        if total["unreadable"]:
            raise CommandError(
                f"{total['unreadable']} token(s) cannot be decrypted with any key in TOKEN_ENCRYPTION_KEYS; "
                "keep the key that encrypted them."
            )
        if total["changed meanwhile"]:
            self.stdout.write("Some tokens changed while this ran: run the command again.")
        else:
            self.stdout.write("Every token is under the first key now; the other keys can be removed.")


def _summary(counts: Counter) -> str:
    names = ("re-encrypted", "already under the first key", "unreadable", "changed meanwhile")
    return ", ".join(f"{counts[name]} {name}" for name in names if counts[name] or name != "changed meanwhile")
