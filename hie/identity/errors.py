"""Errors of the identity domain.

::

    hie.outcome.Invalid (400 invalid)
     └── InvalidIdentifier   an identifier fails its own rules (GB 11643 check digit, embedded
                             birth date or sex contradicting the record); the record is not
                             linked by it: a dead letter for adapter input, an OperationOutcome
                             over HTTP.
"""

from __future__ import annotations

from hie.outcome import Invalid


class InvalidIdentifier(Invalid):
    """An identifier value that breaks its system's rules.

    ``reason`` is the human sentence (it becomes ``OperationOutcome.issue.diagnostics``);
    ``kind`` is a short stable token (``length``, ``check-digit``, ``birth-date-mismatch`` ...)
    that callers and tests can branch on without parsing prose.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str = "invalid",
        expression: str | None = "Patient.identifier",
    ) -> None:
        super().__init__(reason, expression=expression)
        self.reason = reason
        self.kind = kind
