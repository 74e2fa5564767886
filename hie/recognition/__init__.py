"""Mutual recognition of prior results (检查检验结果互认): catalogue, engine, verdicts, savings.

A pure domain package: no HTTP, no SQL, no clock. ``engine.evaluate`` is the one entry point
every edge calls; ``extension`` turns its verdicts into FHIR; ``savings`` aggregates decisions.
"""

from hie.recognition.candidates import pending_order, prior_result, specimen_type
from hie.recognition.catalogue import Catalogue, CatalogueError, CatalogueItem
from hie.recognition.decision import Decision, DeclineReasons, check_decision
from hie.recognition.engine import evaluate
from hie.recognition.extension import EXTENSION_URL, pending_extension, verdict_extension
from hie.recognition.model import (
    AssessedResult,
    Assessment,
    Coverage,
    HospitalProfile,
    LabCredential,
    Pending,
    PendingOrder,
    PriorResult,
    RecognitionPolicy,
    Verdict,
)
from hie.recognition.rules import RecognitionRules
from hie.recognition.savings import LedgerRow, Lookup, ledger, lookup_from, rollup
from hie.recognition.scope import ScopeRules

__all__ = [
    "EXTENSION_URL",
    "AssessedResult",
    "Assessment",
    "Catalogue",
    "CatalogueError",
    "CatalogueItem",
    "Coverage",
    "Decision",
    "DeclineReasons",
    "HospitalProfile",
    "LabCredential",
    "LedgerRow",
    "Lookup",
    "Pending",
    "PendingOrder",
    "PriorResult",
    "RecognitionPolicy",
    "RecognitionRules",
    "ScopeRules",
    "Verdict",
    "check_decision",
    "evaluate",
    "ledger",
    "lookup_from",
    "pending_extension",
    "pending_order",
    "prior_result",
    "rollup",
    "specimen_type",
    "verdict_extension",
]
