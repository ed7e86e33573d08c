"""CRM methods (protocol 16): none yet; crm.deal.get arrives with the deal tab."""
from __future__ import annotations

METHODS: dict = {}
