"""CRM_DEAL_DETAIL_TAB: a tab in the deal card (protocol 16), the deal read with the viewer's rights."""
from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from placements import deals, registry
from portals.bitrix import errors

# CRM answers a missing or forbidden deal with an EMPTY error code (HTTP 400); only the
# description says which (protocol 16).
MISSING_DESCRIPTIONS = ("not found", "access denied")


@registry.register
class CrmDealDetailTab(registry.Placement):
    code = "CRM_DEAL_DETAIL_TAB"
    title = "Deal"
    scope = "crm"
    template = "placements/crm_deal_detail_tab.html"
    entity_keys = ("ID",)
    answer_key = "deal"
    optional_commands = ("stage", "responsible")
    words = {
        "title": _("Deal"),
        "not_found_title": _("Deal not found"),
        "not_found_text": _("It may have been deleted, or you do not have access to it."),
        "unreachable_title": _("Could not load the deal"),
        "error_title": _("Could not load the deal"),
        "error_text": _("Bitrix24 could not pass the deal to the app just now. Try again in a minute."),
        "gone": _("The deal is gone, or you no longer have access to it."),
        "done_reload": _("Deal updated."),
    }

    @classmethod
    def load_commands(cls, entity_id: str) -> dict[str, tuple[str, dict]]:
        # One batch: the deal, then its stage's name and its responsible's name from the deal's
        # own answer ($result, protocol 4.6). crm.deal.get is deprecated but answers the fields
        # the card shows in one call; crm.item.get would need the same two look-ups.
        return {
            "deal": ("crm.deal.get", {"id": entity_id}),
            "stage": ("crm.status.list", {"filter": {"STATUS_ID": "$result[deal][STAGE_ID]"}}),
            "responsible": ("user.get", {"ID": "$result[deal][ASSIGNED_BY_ID]"}),
        }

    @classmethod
    def is_missing(cls, error) -> bool:
        if isinstance(error, errors.AccessDenied):
            # A missing ``crm`` scope is the app's registration, not this deal: say it failed.
            return error.code != "insufficient_scope"
        description = (error.description or "").strip().rstrip(".!").lower()
        return not error.code and description in MISSING_DESCRIPTIONS

    @classmethod
    def view(cls, results: dict, *, origin: str, options: dict, viewer_id: int | None) -> dict | None:
        return deals.deal_view(
            results.get("deal"), stages=results.get("stage"), people=results.get("responsible"), origin=origin
        )
