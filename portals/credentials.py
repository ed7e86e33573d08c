"""Writing a Credential: one home for the installer's token pair and a widget viewer's.

(Refreshing a pair is the token service's, in ``portals.tokens``: it has its own locking rules.)
"""
from __future__ import annotations

from django.db import IntegrityError
from django.utils import timezone

from portals.models import Credential, Portal
from portals.tokens import expiry_from


def credential_store_installer(
    *, portal: Portal, user_id: int, access_token: str, refresh_token: str, expires_at, now
) -> Credential:
    """Store the verified installer's token pair as the portal's admin credential.

    Runs inside the install's transaction (the row is locked for update); an empty REFRESH_ID
    (some on-premise portals) never overwrites a stored refresh token.
    """
    credential, _ = Credential.objects.select_for_update(of=("self",)).get_or_create(
        portal=portal, user_id=user_id, defaults={"is_admin": True}
    )
    credential.is_admin = True
    credential.access_token = access_token
    if refresh_token:
        credential.refresh_token = refresh_token
    credential.expires_at = expires_at
    credential.refreshed_at = now
    credential.save()
    return credential


def _installed(portal: Portal):
    """The portal, unless it was uninstalled (or disabled) meanwhile."""
    return Portal.objects.filter(pk=portal.pk).exclude(status=Portal.Status.UNINSTALLED)


def credential_store_viewer(
    *, portal: Portal, user_id: int, access_token: str, refresh_token: str, expires_in: int
) -> bool:
    """Store the viewer's token pair, for the actions that come after AUTH_EXPIRES; False (and
    nothing kept) when the portal was uninstalled meanwhile.

    One UPDATE on every open but a viewer's first (then an INSERT and two checks more), with no
    BEGIN/COMMIT around it: an upsert (bulk_create) costs three statements per open (bench/run.py).
    The UPDATE itself asks that the portal is still installed; an INSERT is checked before and
    after it is written. The uninstall blanks tokens once more after it commits, so every write
    lands either before that blanking or before this check (portals.services.portal_uninstall).
    Never turns an admin credential into a user one, and an empty REFRESH_ID keeps the stored one.
    """
    now = timezone.now()
    changes = {"access_token": access_token, "expires_at": expiry_from(expires_in=expires_in, now=now),
               "last_used_at": now}
    if refresh_token:
        changes.update(refresh_token=refresh_token, refreshed_at=now)
    viewer = Credential.objects.filter(portal=portal, user_id=user_id)
    if viewer.filter(portal_id__in=_installed(portal).values("pk")).update(**changes):
        return True
    if not _installed(portal).exists():  # not a first open: the portal went away meanwhile
        return False
    try:
        Credential.objects.create(**{"refresh_token": refresh_token, "refreshed_at": now, **changes},
                                  portal=portal, user_id=user_id, is_admin=False, created_at=now)
    except IntegrityError:  # the same viewer's first two opens raced, and the other one inserted
        viewer.update(**changes)
    if _installed(portal).exists():
        return True
    viewer.update(access_token="", refresh_token="", expires_at=None)
    return False


def portal_still_installed(*, portal: Portal) -> bool:
    return _installed(portal).exists()
