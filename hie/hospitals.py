"""The hospitals configuration: who takes part in the exchange and how their systems are reached.

One TOML file, read once at start (``hie serve --config FILE``) and passed inward::

    [exchange]                      province_prefix, timezone, fhir_base_url
    [[hospital]]                    id, name_zh, name_en, level
      [[hospital.credential]]       lab quality credentials (EQA passes) with validity dates
      [[hospital.adapter]]          one feed: kind, schedule, kind-specific settings

A broken file must stop the exchange at start with a message a person can act on, so every
error is a :class:`ConfigError` naming the file, the key path (``hospital[1].adapter[0].
schedule.cron``) and, where it can be found, the line. Unknown keys are errors: a misspelt
``pasword_env`` silently ignored is a feed that never authenticates.

Secrets never live in the file: ``auth.password_env = "SZPH_PACS_PASSWORD"`` names an
environment variable, resolved from the ``env`` mapping the caller hands in (the loader never
reads ``os.environ`` itself). A literal ``password = ...`` is refused.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import date, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")]

# 医院等级 (hospital grades of the NHC's hospital accreditation): 三级甲等 = 3A ... 一级 = 1;
# CHC = community health centre (社区卫生服务中心).
Level = Literal["3A", "3B", "2A", "2B", "1", "CHC"]
AdapterKind = Literal[
    "hl7v2-folder", "hl7v2-mllp", "fhir-rest", "lis-csv", "dicomweb", "dicom-folder"
]
KINDS: frozenset[str] = frozenset(AdapterKind.__args__)  # type: ignore[attr-defined]
PUSH_KINDS: frozenset[str] = frozenset({"hl7v2-mllp"})

# Disciplines the lab EQA schemes (NCCL 国家卫健委临床检验中心, GD 广东省临床检验中心) run
# programmes for, plus imaging quality control. British spellings, fixed so a typo is an error.
DISCIPLINES: frozenset[str] = frozenset(
    {
        "chemistry",
        "haematology",
        "coagulation",
        "immunology",
        "urinalysis",
        "microbiology",
        "molecular",
        "blood-gas",
        "imaging",
    }
)
_SECRET_KEYS = ("password", "token", "secret", "api_key")
_INTERVAL = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class ConfigError(Exception):
    """The hospitals file cannot be used; the message names file, key path and line."""

    def __init__(self, message: str, *, file: Path, key: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.key = key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    """Folders are written relative to the TOML file's own folder, so fixtures move as one."""
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return Path(os.path.normpath(Path(base) / value))


class Exchange(_Model):
    province_prefix: str = Field(min_length=1, max_length=2)  # e.g. 粤, as on licence plates
    timezone: str = "Asia/Shanghai"
    fhir_base_url: HttpUrl | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)


class Credential(_Model):
    """One EQA pass: the hospital's results in ``scope`` may be recognised while it is valid."""

    scope: str = Field(pattern=r"^(discipline:[a-z-]+|item:\d{1,8}-\d)$")  # item: a LOINC code
    scheme: Literal["NCCL-EQA", "GD-EQA"]
    valid_from: date
    valid_to: date

    @field_validator("scope")
    @classmethod
    def _known_discipline(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if kind == "discipline" and name not in DISCIPLINES:
            raise ValueError(f"unknown discipline {name!r}; one of {sorted(DISCIPLINES)}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Credential:
        if self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        return self

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to


class Schedule(_Model):
    """When a pull adapter runs: ``interval = "15m"`` or ``cron = "*/5 * * * *"``, not both."""

    interval: str | None = None
    cron: str | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None and _interval_delta(value) is None:
            raise ValueError(f"{value!r} is not an interval like '30s', '15m', '1h30m' or '1d'")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            CronTrigger.from_crontab(value)  # its ValueError says which field is wrong
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of 'interval' or 'cron'")
        return self

    @property
    def every(self) -> timedelta | None:
        return None if self.interval is None else _interval_delta(self.interval)

    def trigger(self, timezone: tzinfo) -> BaseTrigger:
        """The apscheduler trigger for this schedule (cron fields read in ``timezone``)."""
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=timezone)
        every = self.every
        assert every is not None
        return IntervalTrigger(seconds=int(every.total_seconds()), timezone=timezone)


def _interval_delta(text: str) -> timedelta | None:
    match = _INTERVAL.match(text)
    if not text or match is None:
        return None
    d, h, m, s = (int(g or 0) for g in match.groups())
    delta = timedelta(days=d, hours=h, minutes=m, seconds=s)
    return delta if delta > timedelta(0) else None


class Auth(_Model):
    """Credentials for a hospital system. Only environment variable *names* appear here."""

    username: str | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None  # bearer token
    _secret: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in _SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"literal {key!r} is not allowed: secrets come from the environment, "
                        f'write {key if key != "secret" else "password"}_env = "VARIABLE_NAME"'
                    )
        return data

    @model_validator(mode="after")
    def _one_scheme(self) -> Auth:
        if self.password_env and self.token_env:
            raise ValueError("give password_env (basic) or token_env (bearer), not both")
        if self.password_env and not self.username:
            raise ValueError("password_env needs a username")
        return self

    @property
    def env_name(self) -> str | None:
        return self.password_env or self.token_env

    @property
    def secret(self) -> str | None:
        """The password or token, resolved from the environment at load (enabled adapters)."""
        return self._secret


class _Adapter(_Model):
    name: Slug
    enabled: bool = True
    schedule: Schedule | None = None  # pull adapters without one run only on demand

    @property
    def is_pull(self) -> bool:
        return getattr(self, "kind", "") not in PUSH_KINDS


class _Folder(_Adapter):
    path: Path
    pattern: str = "*"

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return _relative_to_config(value, info)


class Hl7FolderAdapter(_Folder):
    kind: Literal["hl7v2-folder"]


class MllpAdapter(_Adapter):
    """A push listener; several hospitals may share one host:port and be told apart by MSH-4."""

    kind: Literal["hl7v2-mllp"]
    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=1, le=65535)
    # MSH-4 sending facility (HD namespace id) -> hospital id; empty: every message is ours.
    facility: dict[str, Slug] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0)  # seconds without a byte before a socket closes

    @model_validator(mode="after")
    def _no_schedule(self) -> MllpAdapter:
        if self.schedule is not None:
            raise ValueError("an hl7v2-mllp listener is pushed to; it takes no schedule")
        return self


class _Http(_Adapter):
    base_url: HttpUrl
    auth: Auth | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    timeout: float = Field(default=30.0, gt=0)  # read timeout, seconds
    connect_timeout: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)  # per request, first try included
    backoff_base: float = Field(default=0.5, gt=0)  # seconds; doubles per attempt
    backoff_max: float = Field(default=60.0, gt=0)


class FhirRestAdapter(_Http):
    kind: Literal["fhir-rest"]
    # The hospital server's own identifier systems, rewritten to the exchange's
    # (hie.naming.mrn(hospital) and NATIONAL_ID) so patients link across hospitals.
    mrn_system: str | None = None
    national_id_system: str | None = None


class DicomWebAdapter(_Http):
    kind: Literal["dicomweb"]


class DicomFolderAdapter(_Folder):
    kind: Literal["dicom-folder"]
    # The PACS that holds these images (its DICOMweb base): the ImagingStudy's Endpoint.
    # Without it the studies are indexed but cannot be opened from the reference.
    wado_base_url: HttpUrl | None = None
    settle_seconds: float = Field(default=30.0, ge=0)  # files younger than this wait a run


class CsvColumns(_Model):
    """Which header in the hospital's LIS export holds each field (names as exported)."""

    national_id: str | None = None
    mrn: str | None = None
    name: str
    sex: str
    birth_date: str
    order_number: str  # the source identifier of the DiagnosticReport
    test_code: str
    test_name: str
    value: str
    unit: str | None = None
    reference_range: str | None = None
    flag: str | None = None
    status: str | None = None  # no column: every row is final
    collected_at: str
    reported_at: str | None = None
    specimen: str | None = None
    panel_code: str | None = None
    panel_name: str | None = None

    @model_validator(mode="after")
    def _some_patient_id(self) -> CsvColumns:
        if not (self.national_id or self.mrn):
            raise ValueError("map at least one patient identifier column: national_id or mrn")
        return self


class LisCsvAdapter(_Folder):
    kind: Literal["lis-csv"]
    pattern: str = "*.csv"
    encoding: Literal["utf-8", "gb18030"] = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    columns: CsvColumns
    orders_per_batch: int = Field(default=200, ge=1)
    datetime_formats: list[str] = Field(
        default_factory=lambda: [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y/%m/%d %H:%M:%S",
            "%Y/%m/%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y%m%d%H%M%S",
        ]
    )


Adapter = Annotated[
    Hl7FolderAdapter
    | MllpAdapter
    | FhirRestAdapter
    | LisCsvAdapter
    | DicomWebAdapter
    | DicomFolderAdapter,
    Field(discriminator="kind"),
]


class Hospital(_Model):
    id: Slug
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    level: Level
    credentials: list[Credential] = Field(default_factory=list, alias="credential")
    adapters: list[Adapter] = Field(default_factory=list, alias="adapter")

    @field_validator("adapters")
    @classmethod
    def _unique_names(cls, adapters: list[Adapter]) -> list[Adapter]:
        seen: set[str] = set()
        for a in adapters:
            if a.name in seen:
                raise ValueError(f"two adapters named {a.name!r}")
            seen.add(a.name)
        return adapters

    def adapter(self, name: str) -> Adapter:
        for a in self.adapters:
            if a.name == name:
                return a
        raise KeyError(f"hospital {self.id!r} has no adapter {name!r}")

    def holds(self, scope: str, on: date) -> Credential | None:
        """The credential for ``scope`` (``discipline:chemistry``, ``item:4548-4``) on ``on``."""
        return next((c for c in self.credentials if c.scope == scope and c.valid_on(on)), None)


class HospitalsConfig(_Model):
    exchange: Exchange
    hospitals: list[Hospital] = Field(alias="hospital", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> HospitalsConfig:
        ids = [h.id for h in self.hospitals]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"hospital ids must be unique; repeated: {dupes}")
        claimed: dict[tuple[str, int, str], str] = {}
        for h in self.hospitals:
            for a in h.adapters:
                if not isinstance(a, MllpAdapter):
                    continue
                for facility, target in a.facility.items():
                    if target not in ids:
                        raise ValueError(
                            f"{h.id}.{a.name}: facility {facility!r} maps to unknown hospital "
                            f"{target!r}"
                        )
                    key = (a.host, a.port, facility)
                    if claimed.setdefault(key, target) != target:
                        raise ValueError(
                            f"facility {facility!r} on {a.host}:{a.port} is claimed by both "
                            f"{claimed[key]!r} and {target!r}"
                        )
        return self

    def hospital(self, hospital_id: str) -> Hospital:
        for h in self.hospitals:
            if h.id == hospital_id:
                return h
        raise KeyError(f"no hospital {hospital_id!r} in the configuration")

    def pull_adapters(self) -> Iterator[tuple[Hospital, Adapter]]:
        """Enabled pull adapters, in file order: what the scheduler and ``hie sync`` run."""
        for h in self.hospitals:
            for a in h.adapters:
                if a.enabled and a.is_pull:
                    yield h, a

    def mllp_listeners(self) -> dict[tuple[str, int], list[tuple[Hospital, MllpAdapter]]]:
        """Enabled MLLP adapters grouped by the (host, port) one listener serves."""
        out: dict[tuple[str, int], list[tuple[Hospital, MllpAdapter]]] = {}
        for h in self.hospitals:
            for a in h.adapters:
                if isinstance(a, MllpAdapter) and a.enabled:
                    out.setdefault((a.host, a.port), []).append((h, a))
        return out


def load_hospitals(
    path: Path, env: Mapping[str, str], *, check_paths: bool = False
) -> HospitalsConfig:
    """Read, validate and resolve secrets; any problem raises :class:`ConfigError`.

    ``check_paths`` also requires the folder of every enabled folder adapter to exist (for
    ``hie serve``; tests and tools that only inspect the file leave it off).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", file=path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        pos = f"line {where[1]}, column {where[2]}: " if where else ""
        raise ConfigError(f"{path}: {pos}invalid TOML: {detail}", file=path) from exc
    try:
        config = HospitalsConfig.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        lines = [f"{path}: {_describe(err, text)}" for err in exc.errors()]
        first = _key_path(exc.errors()[0]["loc"])
        raise ConfigError("\n".join(lines), file=path, key=first) from exc
    for i, h in enumerate(config.hospitals):
        for j, a in enumerate(h.adapters):
            if not a.enabled:
                continue  # a disabled feed's secrets need not exist (the demo's PACS links)
            auth = getattr(a, "auth", None)
            if isinstance(auth, Auth) and auth.env_name:
                key = f"hospital[{i}].adapter[{j}].auth." + (
                    "password_env" if auth.password_env else "token_env"
                )
                if auth.env_name not in env:
                    raise ConfigError(
                        f"{path}: {_at(text, key)}{key}: environment variable "
                        f"{auth.env_name} is not set",
                        file=path,
                        key=key,
                    )
                auth._secret = env[auth.env_name]
            folder = getattr(a, "path", None)
            if check_paths and isinstance(folder, Path) and not folder.is_dir():
                key = f"hospital[{i}].adapter[{j}].path"
                raise ConfigError(
                    f"{path}: {_at(text, key)}{key}: folder {folder} does not exist",
                    file=path,
                    key=key,
                )
    return config


def _segments(loc: tuple[int | str, ...]) -> list[int | str]:
    # Discriminated unions put the tag ("fhir-rest") into the location; the file has no such key.
    return [p for k, p in enumerate(loc) if not (p in KINDS and k and isinstance(loc[k - 1], int))]


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for p in _segments(loc):
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _describe(err: Any, text: str) -> str:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = _siblings(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
        msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += ("kind",)
        msg = f"kind must be one of {sorted(KINDS)}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    key = _key_path(loc)
    return f"{_at(text, key)}{key}: {msg}"


def _siblings(loc: tuple[int | str, ...]) -> list[str]:
    """Field names allowed next to an unknown key, for a did-you-mean hint."""
    model: Any = HospitalsConfig
    for k, p in enumerate(loc[:-1]):
        if isinstance(p, int):
            continue
        if p in KINDS and k and isinstance(loc[k - 1], int):
            model = _KIND_MODELS[str(p)]
            continue
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == p),
            None,
        )
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return [f.alias or n for n, f in model.model_fields.items()] if model else []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None and found is not type(None):
            return found
    return None


_KIND_MODELS: dict[str, type[_Adapter]] = {
    "hl7v2-folder": Hl7FolderAdapter,
    "hl7v2-mllp": MllpAdapter,
    "fhir-rest": FhirRestAdapter,
    "lis-csv": LisCsvAdapter,
    "dicomweb": DicomWebAdapter,
    "dicom-folder": DicomFolderAdapter,
}


def _at(text: str, key: str) -> str:
    line = _locate(text, key)
    return f"line {line}: " if line else ""


def _locate(text: str, key: str) -> int | None:
    """Best-effort line of a key path in plain TOML layouts (headers and ``key = value``).

    tomllib keeps no positions, so this follows ``[[array]]`` counters and ``[table]`` headers;
    inline tables and multi-line strings fall back to the nearest enclosing line found.
    """
    target = re.findall(r"[^.\[\]]+|\[\d+\]", key)
    want = [int(t[1:-1]) if t.startswith("[") else t for t in target]
    counts: dict[tuple[Any, ...], int] = {}
    current: list[Any] = []
    best, best_len = None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
        header = re.match(r"^(\[\[?)\s*([^\]]+?)\s*\]\]?", line)
        if header:
            names = [n.strip().strip('"') for n in header[2].split(".")]
            path: list[Any] = []
            for n in names[:-1]:
                path.append(n)
                if tuple(path) in counts:
                    path.append(counts[tuple(path)])
            path.append(names[-1])
            if header[1] == "[[":
                counts[tuple(path)] = counts.get(tuple(path), -1) + 1
                path.append(counts[tuple(path)])
            current = path
            candidate = current
        else:
            assign = re.match(r'^([A-Za-z0-9_."-]+?)\s*=', line)
            if not assign:
                continue
            candidate = current + [k.strip('"') for k in assign[1].split(".")]
        n = 0
        while n < min(len(candidate), len(want)) and candidate[n] == want[n]:
            n += 1
        if n == len(candidate) and n > best_len:
            best, best_len = number, n
    return best
