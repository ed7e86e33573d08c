"""The one shape of an error answer to a script: ``{"status": "error", "message": ...}``."""
from django.http import JsonResponse


def json_error(status: int, message: str, **extra) -> JsonResponse:
    """``message`` is for a person to read: it says what was wrong, never a token. ``extra``
    keys (a ``state`` the script explains, say) come beside it."""
    return JsonResponse({"status": "error", "message": message, **extra}, status=status)
