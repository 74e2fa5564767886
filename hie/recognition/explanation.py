"""Human explanations of verdicts, in Chinese and English, and the order reasons are tried in.

The reason codes are those of ``fhir_profiles/CodeSystem-recognition-verdict.json``; a test
keeps the two in step. Texts are short enough for a CDS Hooks card's detail and name the facts
a clinician checks: which hospital, which day, until when, and what exactly failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

VERDICT_URL = "https://hie.example.org/cs/recognition-verdict"

# The engine reports the first failing reason in this order: first what makes the data itself
# unusable, then what the catalogue says about the item, then the producing institution, and
# last the clock. Every further failing reason is kept in Verdict.other_reasons.
REASONS: tuple[str, ...] = (
    "entered-in-error",
    "cancelled",
    "superseded",
    "not-final",
    "not-on-list",
    "specimen-mismatch",
    "unit-mismatch",
    "outside-scope",
    "no-credential-at-time",
    "expired",
)

_TEXT: dict[str, tuple[str, str]] = {
    "mutual-recognition": (
        "{producer_zh} {date} 的{item_zh}结果可互认（{mark}），"
        "有效至 {until}（时限 {window_zh}）。",
        "{item_en} from {producer_en} on {date} is recognised ({mark}) until {until} "
        "(window: {window_en}).",
    ),
    "own-result": (
        "本院 {date} 的{item_zh}结果，有效至 {until}（时限 {window_zh}）。",
        "Own result: {item_en} on {date}, valid until {until} (window: {window_en}).",
    ),
    "entered-in-error": (
        "{producer_zh} {date} 的结果已被标记为录入错误，不能使用。",
        "The result from {producer_en} on {date} was entered in error and must not be used.",
    ),
    "cancelled": (
        "{producer_zh} {date} 的检查检验已取消，没有结果。",
        "The test at {producer_en} on {date} was cancelled; there is no result.",
    ),
    "superseded": (
        "该结果已被更正版本 {detail_zh} 取代，请查看更正后的结果。",
        "This result was superseded by the corrected version {detail_en}; use that one.",
    ),
    "not-final": (
        "{producer_zh} {date} 的结果尚未最终确认（状态 {detail_zh}），仅供参考。",
        "The result from {producer_en} on {date} is not final yet (status {detail_en}); "
        "reference only.",
    ),
    "not-on-list": (
        "该项目不在互认项目目录中，结果仅供参考。",
        "This test is not on the recognition list; reference only.",
    ),
    "specimen-mismatch": (
        "{item_zh}的标本类型 {detail_zh} 不符合目录要求，仅供参考。",
        "Specimen type {detail_en} does not fit {item_en} in the catalogue; reference only.",
    ),
    "unit-mismatch": (
        "{item_zh}的单位 {detail_zh} 不符合目录要求，仅供参考。",
        "Unit {detail_en} does not fit {item_en} in the catalogue; reference only.",
    ),
    "outside-scope": (
        "{detail_zh}，仅供参考。",
        "{detail_en}; reference only.",
    ),
    "no-credential-at-time": (
        "{producer_zh} 在检验当日（{date}）未持有{item_zh}的有效室间质评合格证明（{detail_zh}），"
        "仅供参考。",
        "{producer_en} held no valid EQA pass for {item_en} on the day of the test ({date}; "
        "{detail_en}); reference only.",
    ),
    "expired": (
        "{producer_zh} {date} 的{item_zh}结果已超过互认时限（{window_zh}，截至 {until}），"
        "仅供参考。",
        "{item_en} from {producer_en} on {date} is past its window of {window_en} (ended {until}); "
        "reference only.",
    ),
}


@dataclass(frozen=True)
class Facts:
    """What an explanation may mention; empty strings where a fact does not apply."""

    producer_zh: str = ""
    producer_en: str = ""
    date: str = ""
    item_zh: str = ""
    item_en: str = ""
    until: str = ""
    window_zh: str = ""
    window_en: str = ""
    mark: str = ""
    detail_zh: str = ""
    detail_en: str = ""


def explain(key: str, facts: Facts) -> tuple[str, str]:
    """(zh, en) text for a reason code or a recognition basis."""
    return explain_values(key, facts.__dict__)


def explain_values(key: str, values: Mapping[str, str]) -> tuple[str, str]:
    """:func:`explain` from the facts as a mapping (every field of :class:`Facts`)."""
    zh, en = _TEXT[key]
    return zh.format_map(values), en.format_map(values)


def local_until(expires_at: datetime, zone: tzinfo) -> str:
    """An exclusive end as people say it: 00:00 on the 9th is "2026-11-08 24:00"."""
    local = expires_at.astimezone(zone)
    if local.time() == time(0):
        return f"{(local.date() - timedelta(days=1)).isoformat()} 24:00"
    return local.strftime("%Y-%m-%d %H:%M")
