"""The recognition catalogue: which items may be recognised, for how long, on what credential.

The catalogue is data, a FHIR CodeSystem in ``fhir_profiles/CodeSystem-recognition-catalogue
.json`` whose concepts are the recognised items and whose concept properties (declared in
``CodeSystem.property``) carry every rule the engine applies. Lab items use their LOINC code as
the concept code; imaging items are keyed by modality (DICOM), body site (SNOMED CT) and contrast.
Editing the file changes verdicts with no code change; :meth:`Catalogue.load` refuses a file
whose rules contradict each other (a panel outliving its components, an unknown component).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from hie.naming import LOINC
from hie.recognition.model import Code, PriorResult
from hie.recognition.window import ValidityWindow

Kind = Literal["lab-test", "lab-panel", "imaging"]
CredentialScope = Literal["item", "item-or-discipline", "none"]
Contrast = Literal["with", "without", "any"]

CATALOGUE_URL = "https://hie.example.org/cs/recognition-catalogue"

_KINDS = ("lab-test", "lab-panel", "imaging")
_REQUIRED = ("kind", "discipline", "window", "price", "minutes-saved")


class CatalogueError(ValueError):
    """The catalogue file cannot be used; the message names the concept at fault."""


@dataclass(frozen=True)
class CatalogueItem:
    code: str
    kind: Kind
    display_en: str
    display_zh: str
    discipline: str
    window: ValidityWindow
    window_source: str
    price_rmb: Decimal
    minutes_saved: int
    loinc: tuple[str, ...] = ()  # LOINC codes this item matches (the code itself for lab items)
    components: tuple[str, ...] = ()  # required component item codes (panels)
    optional_components: tuple[str, ...] = ()  # found and covered, not needed for completeness
    specimens: tuple[str, ...] = ()  # accepted SNOMED CT specimen types; empty: not checked
    units: tuple[str, ...] = ()  # accepted UCUM units; empty: not checked (qualitative)
    credential_scope: CredentialScope = "none"
    credential_schemes: tuple[str, ...] = ()
    basic: bool = False
    priority: int = 100
    modalities: tuple[str, ...] = ()
    body_sites: tuple[str, ...] = ()
    contrast: Contrast | None = None

    @property
    def is_panel(self) -> bool:
        return self.kind == "lab-panel"

    @property
    def all_components(self) -> tuple[str, ...]:
        return self.components + self.optional_components

    def accepts_unit(self, unit: str | None) -> bool:
        """UCUM unity ``1`` also stands for "no unit" (dimensionless ratios such as INR)."""
        if unit is None:
            return "1" in self.units
        return unit in self.units


class Catalogue:
    """The items of one catalogue CodeSystem, indexed for matching results and requests."""

    def __init__(self, items: Iterable[CatalogueItem], *, url: str, version: str | None = None):
        self.url = url
        self.version = version
        self.items: dict[str, CatalogueItem] = {}
        self._by_loinc: dict[str, str] = {}
        for item in items:
            if item.code in self.items:
                raise CatalogueError(f"concept {item.code!r} appears twice")
            self.items[item.code] = item
            for loinc in item.loinc:
                other = self._by_loinc.setdefault(loinc, item.code)
                if other != item.code:
                    raise CatalogueError(
                        f"LOINC {loinc} is claimed by both {other!r} and {item.code!r}"
                    )
        self._check()
        # Asked for every requested item of every request: indexed once (issue 8).
        panels: dict[str, list[CatalogueItem]] = {}
        for item in self.items.values():
            for comp in item.all_components:
                bucket = panels.setdefault(comp, [])
                if item not in bucket:
                    bucket.append(item)
        self._panels_with = {code: tuple(found) for code, found in panels.items()}

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from exc
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Catalogue:
        if doc.get("resourceType") != "CodeSystem":
            raise CatalogueError("the catalogue must be a CodeSystem")
        declared = {p["code"]: p.get("type") for p in doc.get("property", [])}
        items = [_item(c, declared) for c in _flatten(doc.get("concept", []))]
        return cls(items, url=str(doc.get("url", CATALOGUE_URL)), version=doc.get("version"))

    def item(self, code: str) -> CatalogueItem:
        return self.items[code]

    def resolve(self, code: Code) -> CatalogueItem | None:
        """The item a requested or carried coding means, if it is on the list."""
        system, value = code
        if system == self.url:
            return self.items.get(value)
        if system == LOINC:
            found = self._by_loinc.get(value)
            return self.items[found] if found else None
        return None

    def match(self, result: PriorResult) -> CatalogueItem | None:
        """The item a result is an instance of: by its codings in order, then (imaging) by
        modality, body site and contrast. A study that states contrast never matches an item
        of the other kind, even through a code."""
        for code in result.codes:
            found = self.resolve(code)
            if found is not None and (
                found.kind != "imaging" or _contrast_fits(found.contrast, result.contrast)
            ):
                return found
        if result.modality is None or result.body_site is None:
            return None
        for item in self.items.values():
            if (
                item.kind == "imaging"
                and result.modality in item.modalities
                and result.body_site in item.body_sites
                and _contrast_fits(item.contrast, result.contrast)
            ):
                return item
        return None

    def panels_with(self, item_code: str) -> tuple[CatalogueItem, ...]:
        """Panels listing the item as a required or optional component."""
        return self._panels_with.get(item_code, ())

    def _check(self) -> None:
        for item in self.items.values():
            if item.is_panel and not item.components:
                raise CatalogueError(f"panel {item.code!r} lists no component")
            if item.optional_components and not item.is_panel:
                raise CatalogueError(f"{item.code!r} is not a panel but lists components")
            for comp in item.all_components:
                part = self.items.get(comp)
                if part is None:
                    raise CatalogueError(f"{item.code!r}: component {comp!r} is not a concept")
                if part.is_panel:
                    raise CatalogueError(f"{item.code!r}: component {comp!r} is itself a panel")
                if comp in item.components and _max_days(item.window) > _min_days(part.window):
                    raise CatalogueError(
                        f"panel {item.code!r} ({item.window.text}) would outlive its component "
                        f"{comp!r} ({part.window.text})"
                    )
            if item.kind == "imaging" and not (
                item.modalities and item.body_sites and item.contrast
            ):
                raise CatalogueError(
                    f"imaging item {item.code!r} needs modality, body-site, contrast"
                )


def _contrast_fits(wanted: Contrast | None, given: bool | None) -> bool:
    """An unstated contrast is taken as plain: DICOM headers rarely say (Contrast/Bolus Agent
    is type 2, often empty), PACS list a plain study as just "CT Chest", and it must never pass
    for an enhanced study."""
    if wanted in ("any", None):
        return True
    if given is None:
        return wanted == "without"
    return given == (wanted == "with")


def _min_days(w: ValidityWindow) -> float:
    per = {"D": 1.0, "W": 7.0, "M": 28.0, "Y": 365.0, "H": 1 / 24}[w.unit]
    return w.amount * per


def _max_days(w: ValidityWindow) -> float:
    per = {"D": 1.0, "W": 7.0, "M": 31.0, "Y": 366.0, "H": 1 / 24}[w.unit]
    return w.amount * per


def _flatten(concepts: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Concepts at any depth; grouping concepts (``notSelectable``) are skipped."""
    for c in concepts:
        props = {p["code"]: p for p in c.get("property", [])}
        not_selectable = props.get("notSelectable", {}).get("valueBoolean", False)
        if not not_selectable:
            yield c
        yield from _flatten(c.get("concept", []))


def _item(concept: Mapping[str, Any], declared: Mapping[str, Any]) -> CatalogueItem:
    code = str(concept.get("code", ""))
    values: dict[str, list[Any]] = {}
    for p in concept.get("property", []):
        name = p.get("code")
        if name not in declared:
            raise CatalogueError(
                f"{code!r}: property {name!r} is not declared in CodeSystem.property"
            )
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        values.setdefault(name, []).append(value)
    for name in _REQUIRED:
        if name not in values:
            raise CatalogueError(f"{code!r}: property {name!r} is missing")

    def one(name: str, default: Any = None) -> Any:
        got = values.get(name)
        if not got:
            return default
        if len(got) > 1:
            raise CatalogueError(f"{code!r}: property {name!r} given {len(got)} times")
        return got[0]

    def many(name: str) -> tuple[str, ...]:
        return tuple(str(v) for v in values.get(name, []))

    kind = one("kind")
    if kind not in _KINDS:
        raise CatalogueError(f"{code!r}: kind {kind!r} is not one of {_KINDS}")
    try:
        window = ValidityWindow.parse(str(one("window")))
    except ValueError as exc:
        raise CatalogueError(f"{code!r}: {exc}") from None
    schemes = many("credential-scheme")
    scope = one("credential-scope", "item-or-discipline" if schemes else "none")
    if scope not in ("item", "item-or-discipline", "none"):
        raise CatalogueError(f"{code!r}: credential-scope {scope!r} is not understood")
    if scope != "none" and not schemes:
        raise CatalogueError(f"{code!r}: credential-scope {scope!r} names no credential-scheme")
    loinc = many("loinc")
    if kind != "imaging" and code not in loinc:
        loinc = (code, *loinc)
    contrast = one("contrast")
    if contrast not in (None, "with", "without", "any"):
        raise CatalogueError(f"{code!r}: contrast {contrast!r} is not with/without/any")
    return CatalogueItem(
        code=code,
        kind=kind,
        display_en=str(concept.get("display", code)),
        display_zh=_designation(concept, "zh") or str(concept.get("display", code)),
        discipline=str(one("discipline")),
        window=window,
        window_source=str(one("window-source", "hie-default")),
        price_rmb=Decimal(str(one("price"))),
        minutes_saved=int(one("minutes-saved")),
        loinc=loinc,
        components=many("component"),
        optional_components=many("optional-component"),
        specimens=many("specimen"),
        units=many("unit"),
        credential_scope=scope,
        credential_schemes=schemes,
        basic=bool(one("basic", False)),
        priority=int(one("priority", 100)),
        modalities=many("modality"),
        body_sites=many("body-site"),
        contrast=contrast,
    )


def _designation(concept: Mapping[str, Any], lang: str) -> str | None:
    for d in concept.get("designation", []):
        if str(d.get("language", "")).split("-")[0] == lang:
            return str(d["value"])
    return None
