"""Domain refusals, free of Django so the pure decider can raise them.

`core.errors` maps each to its HTTP answer.
"""


class DomainError(Exception):
    """A refusal by the domain; `status` and `code` say how the API answers it."""

    status = 409
    code = "conflict"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Invalid(DomainError):
    status = 400
    code = "invalid"


class LeaseLost(Conflict):
    """The lease is no longer the caller's: expired and re-leased, released, or cancelled."""

    code = "lease_lost"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
