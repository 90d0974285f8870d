"""Blueshift-shaped errors.

The domain raises these; the HTTP layer turns each into its status and body. The bodies are the
ones Blueshift documents (seed pages and design record), so a client's error handling is tested
against what it will really see.
"""

from __future__ import annotations

# The message Blueshift's pages give for each status a fault rule may inject.
STATUS_BODIES: dict[int, dict] = {
    400: {"errors": {"request": ["is invalid"]}},
    401: {"message": "Not authorized"},
    403: {"message": "Permission denied"},
    404: {"message": "Resource not found"},
    409: {"message": "Conflict error, please retry"},
    413: {"message": "Request entity too large"},
    422: {"success": False, "error": "Validation failed"},
    429: {"message": "Rate limit exceeded"},
    500: {"message": "Internal Server Error - Please contact support for more information."},
    502: {"message": "Bad Gateway - Please retry the request."},
    503: {"message": "Service Unavailable - The service is temporarily unavailable. Try again later."},
    504: {
        "message": "Gateway Timeout - The server took too long to respond. "
        "Retry with exponential backoff."
    },
}


class BlueshiftError(Exception):
    status = 400

    def __init__(self, body: dict, status: int | None = None):
        super().__init__(body)
        self.body = body
        if status is not None:
            self.status = status


class InvalidField(BlueshiftError):
    """400 `{"errors": {"<field>": ["<message>"]}}`: the field and what is wrong with it."""

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__({"errors": {field: [message]}})
        self.field = field
        self.message = message


class NotFound(BlueshiftError):
    status = 404

    def __init__(self, message: str):
        super().__init__({"message": message})


class Unauthorized(BlueshiftError):
    status = 401

    def __init__(self):
        super().__init__(dict(STATUS_BODIES[401]))


class PermissionDenied(BlueshiftError):
    status = 403

    def __init__(self):
        super().__init__(dict(STATUS_BODIES[403]))


class TooLarge(BlueshiftError):
    status = 413

    def __init__(self, message: str):
        super().__init__({"message": message})


class ParamsNotValid(BlueshiftError):
    """400 in the shape Blueshift's export gives the list bulk calls,
    `{"errors": [{"detail": "Input params not valid"}]}`, with the field at fault and what is
    wrong with it beside the detail (the export's detail alone names neither)."""

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__({"errors": [{"detail": "Input params not valid", "field": field,
                                      "message": message}]})


class EventFieldError(BlueshiftError):
    """400 in the shape Blueshift's export gives the event calls:
    `{"errors": [{"<field>": "<message>"}]}`."""

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__({"errors": [{field: message}]})


class CapExceeded(BlueshiftError):
    """413 `{"error": "<message>"}`, the shape Blueshift's export gives the list bulk calls'
    cap (other 413s carry `message`)."""

    status = 413

    def __init__(self, message: str):
        super().__init__({"error": message})


class LimitReached(BlueshiftError):
    """A configured capacity limit (accounts, profiles, ...) would be exceeded."""

    status = 429

    def __init__(self, message: str):
        super().__init__({"message": message})


CUSTOMER_NOT_FOUND = "Customer not found"
GROUP_NOT_FOUND = "The specified group ID was not found."
LIST_NOT_FOUND = "The customer list you are looking for could not be found."
