"""The one shape of an error answer to a script: ``{"status": "error", "message": ...}``."""
from django.http import JsonResponse


def json_error(status: int, message: str) -> JsonResponse:
    """``message`` is for a person to read: it says what was wrong, never a token."""
    return JsonResponse({"status": "error", "message": message}, status=status)
