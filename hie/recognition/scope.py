"""Which hospitals' results a hospital recognises, by grade: rules read from a CodeSystem.

``fhir_profiles/CodeSystem-recognition-scope.json`` holds two kinds of concept:

* levels (child concepts of ``levels``): the hospital grades of the NHC accreditation scheme
  (三级甲等 3A ... 一级 1, community health centre CHC) with a ``tier`` property (3, 2, 1);
* rules (child concepts of ``rules``): ``producer`` = same-tier | higher-tier | lower-tier,
  ``items`` = all | basic, in the order they are tried.

The default rule set: same-tier hospitals recognise each other (同级互认), a lower tier accepts
a higher tier's results (下级认可上级), and a higher tier accepts a lower tier's only for items
the catalogue marks ``basic``. Grades within a tier (甲/乙) do not matter: a 3B result is a
tertiary result. A region changes any of this by editing the file, not the code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Relation = Literal["same-tier", "higher-tier", "lower-tier"]
_RELATIONS = ("same-tier", "higher-tier", "lower-tier")


@dataclass(frozen=True)
class Level:
    code: str
    tier: int
    display_zh: str
    display_en: str


@dataclass(frozen=True)
class ScopeRule:
    id: str
    producer: Relation
    items: Literal["all", "basic"]
    display_zh: str
    display_en: str


@dataclass(frozen=True)
class ScopeDecision:
    """``rule`` is the admitting rule's id, or ``scope.no-rule`` when none applies."""

    in_scope: bool
    rule: str
    relation: Relation | None
    note_zh: str
    note_en: str


class ScopeRules:
    """The levels and rules of one scope CodeSystem."""

    def __init__(self, levels: Mapping[str, Level], rules: tuple[ScopeRule, ...], url: str):
        self.levels = dict(levels)
        self.rules = rules
        self.url = url

    @classmethod
    def load(cls, path: Path) -> ScopeRules:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ScopeRules:
        if doc.get("resourceType") != "CodeSystem":
            raise ValueError("the scope rules must be a CodeSystem")
        groups = {c["code"]: c.get("concept", []) for c in doc.get("concept", [])}
        levels: dict[str, Level] = {}
        for c in groups.get("levels", []):
            props = _props(c)
            levels[c["code"]] = Level(
                c["code"], int(props["tier"]), _zh(c), c.get("display", c["code"])
            )
        rules: list[ScopeRule] = []
        for c in groups.get("rules", []):
            props = _props(c)
            producer, items = props.get("producer"), props.get("items", "all")
            if producer not in _RELATIONS or items not in ("all", "basic"):
                raise ValueError(f"scope rule {c['code']!r}: bad producer/items {producer}/{items}")
            rules.append(ScopeRule(c["code"], producer, items, _zh(c), c.get("display", c["code"])))
        if not levels or not rules:
            raise ValueError("the scope CodeSystem needs 'levels' and 'rules' concepts")
        return cls(levels, tuple(rules), str(doc.get("url", "")))

    def tier(self, level: str) -> int | None:
        found = self.levels.get(level)
        return found.tier if found else None

    def decide(self, producer_level: str, requester_level: str, basic: bool) -> ScopeDecision:
        """May a hospital of ``requester_level`` recognise a result of ``producer_level``?"""
        p, r = self.tier(producer_level), self.tier(requester_level)
        if p is None or r is None:
            unknown = producer_level if p is None else requester_level
            return ScopeDecision(
                False,
                "scope.unknown-level",
                None,
                f"医院等级 {unknown!r} 不在互认范围规则中",
                f"hospital level {unknown!r} is not in the scope rules",
            )
        relation: Relation = "same-tier" if p == r else ("higher-tier" if p > r else "lower-tier")
        for rule in self.rules:
            if rule.producer == relation and (rule.items == "all" or basic):
                return ScopeDecision(True, rule.id, relation, rule.display_zh, rule.display_en)
        zh = {"same-tier": "同级", "higher-tier": "上级", "lower-tier": "下级"}[relation]
        return ScopeDecision(
            False,
            "scope.no-rule",
            relation,
            f"{zh}医院（{producer_level}）的该项目结果不在本院（{requester_level}）互认范围内",
            f"no scope rule lets a {requester_level} hospital recognise this item from a "
            f"{relation.replace('-tier', '')}-tier ({producer_level}) hospital",
        )


def _props(concept: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in concept.get("property", []):
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        out[p["code"]] = value
    return out


def _zh(concept: Mapping[str, Any]) -> str:
    for d in concept.get("designation", []):
        if str(d.get("language", "")).startswith("zh"):
            return str(d["value"])
    return str(concept.get("display", concept["code"]))
