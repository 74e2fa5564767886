"""One error family for the whole exchange; it becomes an OperationOutcome at the HTTP edge.

::

    FhirError (500 exception)
     ├── Invalid        400 invalid      bad input; ``expression`` names the element (FHIRPath)
     │    ├── NotSupported   400 not-supported  a parameter or interaction hie does not offer
     │    └── TooLarge       413 too-costly     body over the limit
     ├── Unauthorized   401 login        no or bad token
     ├── Forbidden      403 forbidden    token lacks the scope
     ├── NotFound       404 not-found
     ├── Gone           410 deleted
     ├── Conflict       409 conflict     version mismatch on update (If-Match)
     ├── PreconditionFailed 412 conflict   a conditional interaction matched several resources
     └── Unprocessable  422 processable  well-formed but breaks a profile or business rule

Domain code raises these; it never builds HTTP responses itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what is wrong and where (FHIRPath ``expression``)."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = [self.expression]
        return out


class FhirError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers = headers or {}
        self.issues = issues or [Issue(diagnostics, self.code, "error", expression)]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class Invalid(FhirError):
    status, code = 400, "invalid"


class NotSupported(Invalid):
    status, code = 400, "not-supported"


class TooLarge(Invalid):
    status, code = 413, "too-costly"


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class Gone(FhirError):
    status, code = 410, "deleted"


class Conflict(FhirError):
    status, code = 409, "conflict"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class Unprocessable(FhirError):
    status, code = 422, "processable"


class Unavailable(FhirError):
    """The database cannot be reached or is busy: nothing was done; the client may retry."""

    status, code = 503, "transient"


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(text: str) -> dict[str, Any]:
    return operation_outcome([Issue(text, "informational", "information")])
