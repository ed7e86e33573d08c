"""What ``portals`` announces to the apps that build on it (they connect in ``ready()``).

A signal, not a call: ``portals`` must not know who keeps data per portal (placements keep
invocations, events keep an inbox), and each of them cleans up its own.
"""
from django.dispatch import Signal

# Sent once the uninstall has committed (status uninstalled, tokens blanked): ``portal`` (a Portal),
# ``clean`` (bool: Bitrix24's data[CLEAN]=1, "delete the portal's data").
portal_uninstalled = Signal()
