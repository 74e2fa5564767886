"""Everything the engine reads from ``fhir_profiles/``, loaded once at start-up.

The lead's app factory calls :meth:`RecognitionRules.load` with the profiles folder and the
hospitals configuration's ``[exchange]`` values, and hands the result to every edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hie.recognition.catalogue import Catalogue
from hie.recognition.decision import DeclineReasons
from hie.recognition.model import RecognitionPolicy
from hie.recognition.scope import ScopeRules

CATALOGUE_FILE = "CodeSystem-recognition-catalogue.json"
SCOPE_FILE = "CodeSystem-recognition-scope.json"
DECLINE_REASONS_FILE = "CodeSystem-decline-reasons.json"


@dataclass(frozen=True)
class RecognitionRules:
    catalogue: Catalogue
    policy: RecognitionPolicy
    decline_reasons: DeclineReasons

    @classmethod
    def load(
        cls, profiles: Path, *, province_prefix: str, timezone: str = "Asia/Shanghai"
    ) -> RecognitionRules:
        return cls(
            catalogue=Catalogue.load(profiles / CATALOGUE_FILE),
            policy=RecognitionPolicy(
                province_prefix=province_prefix,
                scope=ScopeRules.load(profiles / SCOPE_FILE),
                timezone=timezone,
            ),
            decline_reasons=DeclineReasons.load(profiles / DECLINE_REASONS_FILE),
        )
