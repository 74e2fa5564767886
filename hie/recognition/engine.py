"""The recognition engine: which prior results a hospital can accept instead of testing again.

A pure function of its inputs (no clock, no I/O, no randomness), so the same question gets the
same answer from ``$prior-results``, a CDS Hooks card or the SMART app, and a test can pin it.

For each candidate result the engine applies, in this order, and records every outcome:

1. status: entered-in-error, cancelled, superseded by a correction, not final;
2. catalogue: the result is an instance of an item on the list; specimen and unit fit it;
3. institution (skipped for the requester's own results): the scope rules admit the producing
   hospital's level for this item, and the producing lab held the item's credential on the
   local day the test was done (not today);
4. clock: ``at`` is before the end of the item's validity window.

The first failure is the verdict's reason; a result passing all is ``recognised`` and carries
its expiry and the HR mark. Rules come from the 2022 national measures (国卫医发〔2022〕6号),
the catalogue and scope CodeSystems, and hie's choices documented in ``docs/recognition.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from hie.outcome import Invalid
from hie.recognition.catalogue import Catalogue, CatalogueItem
from hie.recognition.explanation import REASONS, explain_values, local_until
from hie.recognition.model import (
    FINAL_STATUSES,
    PENDING_STATUSES,
    AssessedResult,
    Assessment,
    Basis,
    Check,
    Code,
    Coverage,
    HospitalProfile,
    LabCredential,
    Pending,
    PendingOrder,
    PriorResult,
    RecognitionPolicy,
    RequestedItem,
    Verdict,
    VerdictKind,
)
from hie.recognition.scope import ScopeDecision
from hie.recognition.window import ValidityWindow


def evaluate(
    results: Iterable[PriorResult],
    requested_codes: Iterable[Code],
    requesting_hospital: str,
    at: datetime,
    catalogue: Catalogue,
    hospitals: Mapping[str, HospitalProfile] | Iterable[HospitalProfile],
    credentials: Iterable[LabCredential],
    policy: RecognitionPolicy,
    pending_orders: Iterable[PendingOrder] = (),
    members: MemberSource | None = None,
    *,
    trail: bool = True,
    include_expired: bool = True,
) -> Assessment:
    """Judge every candidate result for the requested items, as seen at instant ``at``.

    ``results`` are the patient's results from the index (any hospital, any status, older
    versions included); results dated after ``at`` are ignored, so ``at`` in the past replays
    what the engine would have said then. A panel's members may be among them or come from
    ``members``, which the engine calls once, with the references of the members it lacks of
    the panels that pass their own checks (only those need their members: to know whether
    they are complete). ``trail=False`` leaves ``Verdict.checks`` empty: the verdicts are
    otherwise the same, for an edge that does not show the checks. ``include_expired=False``
    leaves out the results whose window has ended at ``at`` (whatever else they fail), and
    results pending that long: none of them bears on today's order. Raises
    :class:`~hie.outcome.Invalid` for a naive ``at`` or an unknown requesting hospital.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise Invalid("'at' must be an instant with a time zone offset", expression="at")
    profiles = hospitals if isinstance(hospitals, Mapping) else {h.id: h for h in hospitals}
    requester = profiles.get(requesting_hospital)
    if requester is None:
        raise Invalid(
            f"Unknown requesting hospital {requesting_hospital!r}", expression="requester"
        )
    run = _Run(
        catalogue=catalogue,
        policy=policy,
        zone=ZoneInfo(policy.timezone),
        at=at,
        requester=requester,
        hospitals=dict(profiles),
        credentials=tuple(credentials),
        trail=trail,
        include_expired=include_expired,
    )
    return run.assess(list(results), list(requested_codes), list(pending_orders), members)


# Reads the current version of each "Type/id" it is given; unknown references are left out.
MemberSource = Callable[[list[str]], Iterable[PriorResult]]

# A credential with the key the best one is picked by (see _Run.held_by).
_Held = tuple[tuple[bool, str, date, int], LabCredential]


@dataclass
class _Run:
    catalogue: Catalogue
    policy: RecognitionPolicy
    zone: tzinfo
    at: datetime
    requester: HospitalProfile
    hospitals: dict[str, HospitalProfile]
    credentials: tuple[LabCredential, ...]
    requested: list[RequestedItem] = field(default_factory=list)
    relevant: dict[str, list[Code]] = field(default_factory=dict)  # item code -> requested
    literal: set[Code] = field(default_factory=set)  # requested codes not on the list
    superseded_by: dict[tuple[str, str | None], str] = field(default_factory=dict)
    latest: dict[str, PriorResult] = field(default_factory=dict)  # ref -> newest version
    # A result's catalogue item, and each hospital's credentials: asked for many times per
    # result (relates, judge, covers, order), so looked up once (issue 8 profile).
    items: dict[tuple[str, str | None], CatalogueItem | None] = field(default_factory=dict)
    # (hospital, scope) -> [(preference, credential)], preference = the order the best one is
    # picked in: item scopes before a discipline's, then scheme, start, configuration order.
    held_by: dict[tuple[str, str], list[_Held]] = field(default_factory=dict)
    checked: dict[tuple[str, str | None], _Checked] = field(default_factory=dict)
    scopes: dict[str, set[str]] = field(default_factory=dict)  # credential scopes by item
    # A panel's results share their time and many items share a window: each end is worked
    # out once per request (was ~80 calendar computations a request, issue 8).
    expiries: dict[tuple[ValidityWindow, datetime], datetime] = field(default_factory=dict)
    windows: dict[ValidityWindow, tuple[str, str]] = field(default_factory=dict)  # (zh, en)
    decisions: dict[tuple[str, bool], tuple[ScopeDecision, str]] = field(default_factory=dict)
    # Whether a verdict lists every check applied (``Verdict.checks``). The FHIR answer does
    # not carry them; building them was ~10% of the engine's time per request (issue 8).
    trail: bool = True
    include_expired: bool = True  # results whose window has ended are answered (as history)
    # A result's local day (and its text) and a window's end as text, per instant: a panel's
    # results share their time, and many items share a window's end.
    days: dict[datetime, tuple[date, str]] = field(default_factory=dict)
    untils: dict[datetime, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.held_by = _credential_index(self.credentials)

    def _item(self, r: PriorResult) -> CatalogueItem | None:
        key = r.key
        if key in self.items:
            return self.items[key]
        found = self.items[key] = self.catalogue.match(r)
        return found

    # -- the whole request -------------------------------------------------------------------

    def assess(
        self,
        results: list[PriorResult],
        requested_codes: list[Code],
        orders: list[PendingOrder],
        members: MemberSource | None = None,
    ) -> Assessment:
        self._resolve_requests(requested_codes)
        visible = self._visible(results)
        self._find_superseded(visible)
        if members is not None and (lacking := self._lacking_members(visible)):
            visible += self._visible(members(lacking))
            self._find_superseded(visible)
        assessed: list[AssessedResult] = []
        for r in visible:
            relates = self._relates(r)
            if not relates or self._past(r):
                continue
            # What it covers needs only whether it passes; the verdict is then built once with
            # it (a dataclasses.replace per answered result cost ~50 µs a request, issue 8).
            recognised = not self._checked(r).failed
            covers, missing = self._covers(r, recognised, relates)
            verdict = self._judge(r, covers=covers, relates_to=tuple(relates), missing=missing)
            assessed.append(AssessedResult(r, verdict))
        assessed.sort(key=self._order)
        pending = self._pending(visible, orders)
        coverage = tuple(self._coverage(q, assessed, pending) for q in self.requested)
        return Assessment(
            at=self.at,
            requester=self.requester,
            requested=tuple(self.requested),
            results=tuple(assessed),
            coverage=coverage,
            pending=tuple(pending),
        )

    def _visible(self, results: Iterable[PriorResult]) -> list[PriorResult]:
        at = self.at
        return [r for r in results if r.effective <= at and (r.issued is None or r.issued <= at)]

    def _lacking_members(self, visible: list[PriorResult]) -> list[str]:
        """Members not among ``visible`` of the answered panels that pass their own checks."""
        lacking: dict[str, None] = {}
        for r in visible:
            item = self._item(r) if r.members else None
            if item is None or not item.is_panel:
                continue
            if self._relates(r) and not self._checked(r).failed:  # answered: checked in full
                lacking.update((m, None) for m in r.members if m not in self.latest)
        return list(lacking)

    def _resolve_requests(self, codes: list[Code]) -> None:
        seen: set[Code] = set()
        for code in codes:
            if code in seen:
                continue
            seen.add(code)
            item = self.catalogue.resolve(code)
            self.requested.append(
                RequestedItem(
                    code,
                    item.code if item else None,
                    item.display_zh if item else None,
                    item.display_en if item else None,
                )
            )
            if item is None:
                self.literal.add(code)
                continue
            linked = [item.code, *item.all_components]
            linked += [p.code for p in self.catalogue.panels_with(item.code)]
            for code_ in linked:
                bucket = self.relevant.setdefault(code_, [])
                if code not in bucket:
                    bucket.append(code)

    def _find_superseded(self, results: list[PriorResult]) -> None:
        """Older versions of one resource, and results a newer one says it replaces."""
        for r in results:
            known = self.latest.get(r.ref)
            if known is None or r.version_key > known.version_key:
                self.latest[r.ref] = r
        for r in results:
            newest = self.latest[r.ref]
            if newest is not r and newest.version_key != r.version_key:
                self.superseded_by[r.key] = f"{r.ref}/_history/{newest.version}"
            elif r.superseded:
                self.superseded_by[r.key] = "(index)"
        for r in results:
            if r.replaces and r.replaces in self.latest and r.status not in _VOID:
                for old in results:
                    if old.ref == r.replaces:
                        self.superseded_by.setdefault(old.key, r.ref)

    def _past(self, r: PriorResult) -> bool:
        """Whether ``r`` is left out as past its window (only when expired ones are not asked
        for; a result with no item has no window and stays). Checked in full: a result that
        stays is answered, and its verdict needs the notes."""
        return not self.include_expired and "expired" in self._checked(r).failed

    def _relates(self, r: PriorResult) -> list[Code]:
        item = self._item(r)
        if item is not None:
            return list(self.relevant.get(item.code, []))
        return [c for c in r.codes if c in self.literal]

    # -- one result --------------------------------------------------------------------------

    def _recognised(self, r: PriorResult) -> bool:
        """Whether the result passes every check. A panel's members are asked this and most
        never appear in the answer: those are checked without the notes; a member that will be
        answered itself (it relates to a requested item) is checked in full once, now."""
        return not self._checked(r, notes=bool(self._relates(r))).failed

    def _checked(self, r: PriorResult, *, notes: bool = True) -> _Checked:
        """The checks on ``r``, made once; ``notes=False``: only whether and why it fails (the
        passing checks' notes, e.g. a window's end as text, are left out: a panel's members
        are asked whether they pass, and most of them never reach the answer)."""
        found = self.checked.get(r.key)
        if found is None or (notes and not found.notes):
            found = self.checked[r.key] = self._check(r, notes)
        return found

    def _check(self, r: PriorResult, notes: bool = True) -> _Checked:
        checks: list[Check] = []
        failed: dict[str, tuple[str, str, str]] = {}  # reason -> (rule, detail_zh, detail_en)
        listed = notes and self.trail  # every check goes into ``checks``

        def fail(reason: str, rule: str, note: str, zh: str = "", en: str = "") -> None:
            if listed:
                checks.append(Check(rule, False, note))
            failed.setdefault(reason, (rule, zh or note, en or note))

        if r.status == "entered-in-error":
            fail("entered-in-error", "status.entered-in-error", r.status)
        elif r.status == "cancelled":
            fail("cancelled", "status.cancelled", r.status)
        if r.key in self.superseded_by:
            fail("superseded", "version.superseded", self.superseded_by[r.key])
        if r.status in FINAL_STATUSES:
            if listed:
                checks.append(Check("status.final", True, r.status))
        elif r.status not in _VOID:
            fail("not-final", "status.not-final", r.status)

        producer = self.hospitals.get(r.hospital_id)
        own = r.hospital_id == self.requester.id
        item = self._item(r)
        expires_at = None
        credential = None
        scope_rule = "own-result" if own else "scope.unknown-hospital"
        if item is None:
            fail("not-on-list", "catalogue.not-on-list", ", ".join(f"{s}|{c}" for s, c in r.codes))
        else:
            if listed:
                checks.append(Check("catalogue.on-list", True, item.code))
            if (
                listed
                and item.kind == "imaging"
                and item.contrast == "without"
                and r.contrast is None
            ):
                checks.append(Check("imaging.contrast", True, "not stated: taken as plain"))
            if item.specimens and r.specimen is not None and r.specimen not in item.specimens:
                fail("specimen-mismatch", "catalogue.specimen", r.specimen)
            elif item.specimens and listed:
                checks.append(Check("catalogue.specimen", True, r.specimen or "not stated"))
            if item.units and (r.value is not None or r.unit is not None):
                if not item.accepts_unit(r.unit):
                    fail("unit-mismatch", "catalogue.unit", r.unit or "(none)")
                elif listed:
                    checks.append(Check("catalogue.unit", True, r.unit or "1"))
            if not own:
                scope_rule = self._check_scope(item, producer, checks, fail, listed)
                credential = self._check_credential(r, item, checks, fail, notes, listed)
            expires_at = self._expires(item.window, r.effective)
            if self.at >= expires_at:
                # the note is the check's only: the explanation names the window and its end
                note = f"{item.window.text} ended {expires_at}" if listed else ""
                fail("expired", "window.expired", note)
            elif listed:
                checks.append(
                    Check("window.within", True, f"{item.window.text} until {expires_at}")
                )

        return _Checked(
            checks, failed, item, producer, own, expires_at, credential, scope_rule, notes
        )

    def _expires(self, window: ValidityWindow, effective: datetime) -> datetime:
        key = (window, effective)
        found = self.expiries.get(key)
        if found is None:
            found = self.expiries[key] = window.expires_at(effective, self.zone)
        return found

    def _window_text(self, window: ValidityWindow) -> tuple[str, str]:
        found = self.windows.get(window)
        if found is None:
            found = self.windows[window] = (window.describe("zh"), window.describe("en"))
        return found

    def _day(self, instant: datetime) -> tuple[date, str]:
        found = self.days.get(instant)
        if found is None:
            day = instant.astimezone(self.zone).date()
            found = self.days[instant] = (day, day.isoformat())
        return found

    def _until(self, expires_at: datetime) -> str:
        found = self.untils.get(expires_at)
        if found is None:
            found = self.untils[expires_at] = local_until(expires_at, self.zone)
        return found

    def _judge(
        self,
        r: PriorResult,
        *,
        covers: tuple[Code, ...] = (),
        relates_to: tuple[Code, ...] = (),
        missing: tuple[str, ...] = (),
    ) -> Verdict:
        c = self._checked(r)
        failed, item, producer, own = c.failed, c.item, c.producer, c.own
        values = self._facts(r, item, producer, c.expires_at)
        reasons = [reason for reason in REASONS if reason in failed]
        if reasons:
            reason = reasons[0]
            rule, values["detail_zh"], values["detail_en"] = failed[reason]
            kind: VerdictKind = "reference-only"
            basis: Basis | None = None
            zh, en = explain_values(reason, values)
        else:
            reason, rule, kind = None, c.scope_rule, "recognised"
            basis = "own-result" if own else "mutual-recognition"
            zh, en = explain_values(basis, values)
        # One constructor call (was a dict of the shared fields, unpacked): ~30 a request.
        return Verdict(
            kind=kind,
            rule=rule,
            explanation_zh=zh,
            explanation_en=en,
            basis=basis,
            reason=reason,
            other_reasons=tuple(reasons[1:]),
            checks=tuple(c.checks),
            item_code=item.code if item else None,
            item_display_zh=item.display_zh if item else None,
            item_display_en=item.display_en if item else None,
            expires_at=c.expires_at,
            mark_prefix=None if own or reason else self.policy.province_prefix,
            mark=None if own or reason else self.policy.mark,
            covers=covers,
            relates_to=relates_to,
            missing=missing,
            producer_id=r.hospital_id,
            producer_name_zh=producer.name_zh if producer else None,
            producer_name_en=producer.name_en if producer else None,
            credential=c.credential,
        )

    def _check_scope(
        self,
        item: CatalogueItem,
        producer: HospitalProfile | None,
        checks: list[Check],
        fail: _Fail,
        notes: bool = True,
    ) -> str:
        if producer is None:
            fail(
                "outside-scope",
                "scope.unknown-hospital",
                "producer not in the hospitals configuration",
                "出具结果的医院不在互认医院名单中",
                "the producing hospital is not in the exchange's hospital list",
            )
            return "scope.unknown-hospital"
        key = (producer.level, item.basic)
        found = self.decisions.get(key)
        if found is None:  # a few levels and two kinds of item: decided once per request
            found = self.decisions[key] = (
                self.policy.scope.decide(producer.level, self.requester.level, item.basic),
                f"{producer.level} -> {self.requester.level}",
            )
        decision, note = found
        if decision.in_scope:
            if notes:
                checks.append(Check(decision.rule, True, note))
        else:
            fail("outside-scope", decision.rule, note, decision.note_zh, decision.note_en)
        return decision.rule

    def _check_credential(
        self,
        r: PriorResult,
        item: CatalogueItem,
        checks: list[Check],
        fail: _Fail,
        notes: bool = True,
        listed: bool = True,
    ) -> LabCredential | None:
        if item.credential_scope == "none":
            if listed:
                checks.append(Check("credential.not-required", True, item.code))
            return None
        day = self._day(r.effective)[0]
        scopes = self.scopes.get(item.code)
        if scopes is None:
            scopes = {f"item:{code}" for code in (item.code, *item.loinc)}
            if item.credential_scope == "item-or-discipline":
                scopes.add(f"discipline:{item.discipline}")
            self.scopes[item.code] = scopes
        held = [
            pc
            for scope in scopes
            for pc in self.held_by.get((r.hospital_id, scope), ())
            if pc[1].scheme in item.credential_schemes and pc[1].valid_on(day)
        ]
        if held:
            best = min(held)[1]
            if listed:
                checks.append(Check("credential.held", True, best.describe()))
            return best
        if not notes:
            fail("no-credential-at-time", "credential.missing", "")
            return None
        wanted = " / ".join(sorted(scopes))
        schemes = "/".join(item.credential_schemes)
        fail(
            "no-credential-at-time",
            "credential.missing",
            f"{schemes} {wanted} on {day}",
            f"需 {schemes} {wanted}",
            f"needs {schemes} {wanted}",
        )
        return None

    def _facts(
        self,
        r: PriorResult,
        item: CatalogueItem | None,
        producer: HospitalProfile | None,
        expires_at: datetime | None,
    ) -> dict[str, str]:
        """What the explanation may mention (the fields of :class:`Facts`), as a dict the
        verdict's text is formatted from directly."""
        window_zh, window_en = self._window_text(item.window) if item else ("", "")
        return {
            "producer_zh": producer.name_zh if producer else r.hospital_id,
            "producer_en": producer.name_en if producer else r.hospital_id,
            "date": self._day(r.effective)[1],
            "item_zh": item.display_zh if item else (r.display or ""),
            "item_en": item.display_en if item else (r.display or ""),
            "until": self._until(expires_at) if expires_at else "",
            "window_zh": window_zh,
            "window_en": window_en,
            "mark": self.policy.mark,
            "detail_zh": "",
            "detail_en": "",
        }

    # -- what each result covers -------------------------------------------------------------

    def _covers(
        self, r: PriorResult, recognised: bool, relates: list[Code]
    ) -> tuple[tuple[Code, ...], tuple[str, ...]]:
        """Requested codes this result stands in for, and (panels) components it lacks.

        Only a recognised panel is asked what it lacks: one that fails its own checks covers
        nothing whatever its members, and listing every component as missing told no one
        anything (and made the engine fetch and judge members of every old panel)."""
        item = self._item(r)
        if item is None or not recognised:
            return (), ()
        missing: tuple[str, ...] = ()
        present: set[str] = set()
        if item.is_panel:
            present = self._recognised_members(r)
            missing = tuple(c for c in item.components if c not in present)
        covers: list[Code] = []
        for q in relates:
            wanted = self.catalogue.resolve(q)
            if wanted is None:
                continue
            whole = wanted.code == item.code and not missing
            if whole or (item.is_panel and wanted.code in present):
                covers.append(q)
        return tuple(covers), missing

    def _recognised_members(self, panel: PriorResult) -> set[str]:
        found: set[str] = set()
        for ref in panel.members:
            member = self.latest.get(ref)
            if member is None or member.hospital_id != panel.hospital_id:
                continue
            member_item = self._item(member)
            if member_item is not None and self._recognised(member):
                found.add(member_item.code)
        return found

    def _coverage(
        self, q: RequestedItem, assessed: list[AssessedResult], pending: list[Pending]
    ) -> Coverage:
        waiting = tuple(p.ref for p in pending if q.code in p.covers)
        if q.item_code is None:
            return Coverage(q.code, "pending" if waiting else "none", False, pending=waiting)
        by = tuple(a.result.ref for a in assessed if q.code in a.verdict.covers)
        if by:
            return Coverage(q.code, "covered", True, by=_unique(by), pending=waiting)
        item = self.catalogue.item(q.item_code)
        if item.is_panel:
            parts: list[str] = []
            missing: list[str] = []
            for comp in item.components:
                refs = [
                    a.result.ref
                    for a in assessed
                    if a.verdict.recognised and a.verdict.item_code == comp
                ]
                if refs:
                    parts.extend(refs)
                else:
                    missing.append(comp)
            if parts and not missing:
                return Coverage(q.code, "covered", True, by=_unique(parts), pending=waiting)
            if parts:
                return Coverage(
                    q.code,
                    "partial",
                    True,
                    by=_unique(parts),
                    missing=tuple(missing),
                    pending=waiting,
                )
        return Coverage(q.code, "pending" if waiting else "none", True, pending=waiting)

    # -- pending elsewhere -------------------------------------------------------------------

    def _pending(self, visible: list[PriorResult], orders: list[PendingOrder]) -> list[Pending]:
        out: list[Pending] = []
        fulfilled = {
            r.based_on_order for r in visible if r.based_on_order and r.status not in _VOID
        }
        for r in visible:
            if (
                r.hospital_id == self.requester.id
                or r.status not in PENDING_STATUSES
                or r.key in self.superseded_by
            ):
                continue
            if (related := self._relates(r)) and not self._past(r):
                out.append(
                    self._pending_entry(
                        r.ref, "result", r.hospital_id, r.status, r.effective, related, r.display
                    )
                )
        for order in orders:
            if (
                order.hospital_id == self.requester.id
                or order.status != "active"
                or order.authored > self.at
                or order.ref in fulfilled
            ):
                continue
            relates: list[Code] = []
            for code in order.codes:
                item = self.catalogue.resolve(code)
                if item is not None:
                    # An order older than the item's window is taken as abandoned.
                    if self.at >= item.window.expires_at(order.authored, self.zone):
                        continue
                    relates += [q for q in self.relevant.get(item.code, []) if q not in relates]
                elif code in self.literal and code not in relates:
                    relates.append(code)
            if relates:
                out.append(
                    self._pending_entry(
                        order.ref,
                        "order",
                        order.hospital_id,
                        order.status,
                        order.authored,
                        relates,
                        order.display,
                    )
                )
        out.sort(key=lambda p: (-p.since.timestamp(), p.ref))
        return out

    def _pending_entry(
        self,
        ref: str,
        source: str,
        hospital_id: str,
        status: str,
        since: datetime,
        covers: list[Code],
        display: str | None,
    ) -> Pending:
        h = self.hospitals.get(hospital_id)
        name_zh = h.name_zh if h else hospital_id
        name_en = h.name_en if h else hospital_id
        day = since.astimezone(self.zone).date().isoformat()
        what_zh, what_en = (
            ("已开单", "was ordered")
            if source == "order"
            else ("结果未最终确认", "has a result that is not final")
        )
        return Pending(
            ref=ref,
            source="order" if source == "order" else "result",
            hospital_id=hospital_id,
            hospital_name_zh=h.name_zh if h else None,
            hospital_name_en=h.name_en if h else None,
            status=status,
            since=since,
            covers=tuple(covers),
            explanation_zh=f"{name_zh} {day} {what_zh}（状态 {status}），请等待结果，勿重复开单。",
            explanation_en=f"The same test {what_en} at {name_en} on {day} (status {status}); "
            "wait for it rather than order again.",
            display=display,
        )

    def _order(self, a: AssessedResult) -> tuple[int, float, int, str, tuple[int, str]]:
        """Recognised first, then newest first, then catalogue priority, then a stable tie."""
        item = self._item(a.result)
        return (
            0 if a.verdict.recognised else 1,
            -a.result.effective.timestamp(),
            item.priority if item else 1_000,
            a.result.ref,
            (-a.result.version_key[0], a.result.version_key[1]),
        )


_VOID = frozenset({"entered-in-error", "cancelled"})


@dataclass
class _Checked:
    """The outcome of every check on one result, before any text is composed."""

    checks: list[Check]
    failed: dict[str, tuple[str, str, str]]  # reason -> (rule, detail_zh, detail_en)
    item: CatalogueItem | None
    producer: HospitalProfile | None
    own: bool
    expires_at: datetime | None
    credential: LabCredential | None
    scope_rule: str
    notes: bool  # ``checks`` and the failure details are filled (else only ``failed``'s keys)


class _Fail(Protocol):
    """The signature of the ``fail`` callback ``_judge`` hands to its checks."""

    def __call__(self, reason: str, rule: str, note: str, zh: str = "", en: str = "") -> None: ...


# The callers pass the same credentials tuple with every request (the hospitals configuration);
# indexing it per request cost time in proportion to the city's hospitals, not the patient's
# history (issue 8). Keyed by identity, the tuple kept so the id cannot be reused.
_INDEXED: dict[int, tuple[tuple[LabCredential, ...], dict[tuple[str, str], list[_Held]]]] = {}


def _credential_index(
    credentials: tuple[LabCredential, ...],
) -> dict[tuple[str, str], list[_Held]]:
    cached = _INDEXED.get(id(credentials))
    if cached is not None and cached[0] is credentials:
        return cached[1]
    index: dict[tuple[str, str], list[_Held]] = {}
    for n, c in enumerate(credentials):
        preference = (not c.scope.startswith("item:"), c.scheme, c.valid_from, n)
        index.setdefault((c.hospital_id, c.scope), []).append((preference, c))
    if len(_INDEXED) >= 8:  # a test suite builds many configurations; a server, one
        _INDEXED.clear()
    _INDEXED[id(credentials)] = (credentials, index)
    return index


def _unique(refs: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(refs))
