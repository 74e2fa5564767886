"""Person names reduced to forms that compare across hospitals and scripts.

A Chinese name arrives as characters (张伟), as Hanyu Pinyin in a foreign-facing system
(``ZHANG Wei``, ``Wei Zhang``), or in both. Every name therefore becomes upper-case Latin
letters without accents or spaces (pinyin for characters, GB/T 28039-2011 "Chinese
phonetic alphabet spelling rules for Chinese names"), keeping the characters alongside when
the record has them, so that:

* the same characters → exact agreement;
* the same pinyin, different characters → a homophone (the usual input-method slip: 伟/玮);
* family and given swapped → Western systems often file a Chinese name the other way round.

Characters are split into family and given name by the record's script, not by its
``family``/``given`` fields, because hospital systems fill those inconsistently (the whole
name in ``family`` is common); compound surnames (欧阳, 司马 ...) are recognised.

Placeholder names are flagged so they never carry a link: a newborn registered as
"张伟之子" (son of 张伟) or "Baby of Smith" names the parent, and "无名氏" / "Unknown"
names nobody.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Placeholder = Literal["newborn", "unknown"]

_COMPOUND = (
    "欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 令狐 端木 西门 南宫 "
    "独孤 百里 呼延 轩辕 单于 闻人 万俟 澹台 濮阳 申屠 公冶 太史 钟离 赫连 司空 东郭 "
    "左丘 梁丘 第五 拓跋 完颜 纳兰"
)
COMPOUND_SURNAMES = frozenset(_COMPOUND.split())

# Surnames whose reading differs from the character's everyday reading (百家姓 usage).
SURNAME_READINGS = {
    "曾": "ZENG",
    "单": "SHAN",
    "仇": "QIU",
    "解": "XIE",
    "查": "ZHA",
    "区": "OU",
    "朴": "PIAO",
    "盖": "GE",
    "乐": "YUE",
    "覃": "QIN",
    "翟": "ZHAI",
    "缪": "MIAO",
    "种": "CHONG",
    "秘": "BI",
    "召": "SHAO",
    "尉迟": "YUCHI",
    "长孙": "ZHANGSUN",
    "万俟": "MOQI",
    "单于": "CHANYU",
}

_NEWBORN = re.compile(
    r"(之子|之女|之儿|之婴|之新生儿|之男婴|之女婴|婴儿?|宝宝|新生儿)[一二三四12]?$"
)
_NEWBORN_LATIN = re.compile(
    r"^\s*(baby(\s*(boy|girl))?(\s*of)?|b/o|infant(\s*of)?|newborn)\b", re.IGNORECASE
)
_UNKNOWN = frozenset({"无名氏", "未知", "不详", "UNKNOWN", "JOHNDOE", "JANEDOE", "DOE", "NN"})
# Passport spellings of ü (吕 LYU, 女 NYU, GB/T 28039 §5.4) meet pypinyin's "lv" at "LU".
_UMLAUT_TOKENS = {"LYU": "LU", "NYU": "NU", "LV": "LU", "NV": "NU"}
# Southern-Mandarin and Cantonese speakers merge these sounds; they make the fuzzy key.
_FUZZY = (("ZH", "Z"), ("CH", "C"), ("SH", "S"), ("ANG", "AN"), ("ENG", "EN"), ("ING", "IN"))


@dataclass(frozen=True)
class NameForm:
    """One way of writing a person's name, normalised.

    ``family`` and ``given`` are upper-case A-Z only (pinyin for characters); ``hanzi`` is
    the name in characters (family + given) when the record had them.
    """

    family: str
    given: str
    hanzi: str | None = None
    placeholder: Placeholder | None = None

    @property
    def full(self) -> str:
        return self.family + self.given

    @property
    def reversed(self) -> str:
        return self.given + self.family

    def to_json(self) -> list[str | None]:
        return [self.family, self.given, self.hanzi, self.placeholder]

    @classmethod
    def from_json(cls, data: list[Any]) -> NameForm:
        return cls(data[0], data[1], data[2], data[3])


def is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0002ebef"


def latin(text: str) -> str:
    """Upper-case A-Z only: accents stripped (NFKD), spaces, hyphens, apostrophes dropped."""
    tokens = []
    for raw in re.split(r"[\s\-'’.,·]+", unicodedata.normalize("NFKD", text)):
        token = "".join(c for c in raw if c.isascii() and c.isalpha()).upper()
        if token:
            tokens.append(_UMLAUT_TOKENS.get(token, token))
    return "".join(tokens)


def warm() -> None:
    """Load pypinyin's dictionaries now (~0.4 s, ~55 MB), where a process is about to ingest:
    a bulk load pays it before its first line rather than inside its first batch, and the
    server does it in the background once it is answering."""
    pinyin("张伟")


@lru_cache(maxsize=65536)
def pinyin(chars: str) -> str:
    """Toneless pinyin of characters, upper case, no separators (ü written U).

    pypinyin is imported on first use: its phrase dictionary costs ~0.4 s to load, which
    ``hie serve`` should not pay before it can answer (the server warms it after start-up).
    """
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(chars, errors="ignore")).upper().replace("V", "U")


@lru_cache(maxsize=65536)
def surname_pinyin(chars: str) -> str:
    return SURNAME_READINGS.get(chars) or pinyin(chars)


def split_hanzi(name: str) -> tuple[str, str]:
    """Family and given name of a name written in characters (compound surnames first)."""
    if len(name) > 2 and name[:2] in COMPOUND_SURNAMES:
        return name[:2], name[2:]
    return name[:1], name[1:]


def fuzzy(key: str) -> str:
    """A soundex-like key for pinyin: merges zh/z, ch/c, sh/s, -ng/-n and l/n."""
    for a, b in _FUZZY:
        key = key.replace(a, b)
    return key.replace("L", "N")


def _han_form(chars: str) -> NameForm:
    family, given = split_hanzi(chars)
    placeholder: Placeholder | None = None
    if chars in _UNKNOWN:
        placeholder = "unknown"
    elif _NEWBORN.search(chars):
        placeholder = "newborn"
    return NameForm(surname_pinyin(family), pinyin(given), chars, placeholder)


def _latin_forms(family: str, given: list[str], text: str) -> list[NameForm]:
    if not family and not given:
        words = [w for w in re.split(r"\s+", text.strip()) if w]
        if not words:
            return []
        family, given = words[-1], words[:-1]
    fam = latin(family)
    givens = [g for g in (latin(x) for x in given) if g]
    whole = fam + "".join(givens)
    placeholder: Placeholder | None = None
    if {whole, "".join(givens) + fam} & _UNKNOWN or (fam in _UNKNOWN and not givens):
        placeholder = "unknown"
    elif _NEWBORN_LATIN.match(" ".join([*given, family])):
        placeholder = "newborn"
    if not whole:
        return []
    forms = [NameForm(fam, "".join(givens), None, placeholder)]
    if len(givens) > 1:  # "John Michael SMITH" also meets "John SMITH"
        forms.append(NameForm(fam, givens[0], None, placeholder))
    return forms


def _hanzi(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if is_han(c))


def forms_of(name: Mapping[str, Any]) -> list[NameForm]:
    """The normalised forms of one FHIR ``HumanName``.

    Characters anywhere (``family``/``given`` first, else ``text``) give a Chinese form;
    Latin letters in ``family``/``given`` (or in ``text`` when nothing else is there) give
    a Latin form as well, so ``{"text": "张伟", "family": "Zhang", "given": ["Wei"]}`` has both.
    """
    family = str(name.get("family") or "")
    given = [str(g) for g in name.get("given") or []]
    text = str(name.get("text") or "")
    forms: list[NameForm] = []
    chars = _hanzi(family + "".join(given)) or _hanzi(text)
    if chars:
        forms.append(_han_form(chars))
    if latin(family + "".join(given)):
        forms.extend(_latin_forms(family, given, ""))
    elif not forms and text:
        forms.extend(_latin_forms("", [], text))
    return forms


def name_forms(names: Iterable[Mapping[str, Any]]) -> tuple[NameForm, ...]:
    """All forms of a Patient's names, old names (``use: old``) included, duplicates dropped."""
    seen: dict[NameForm, None] = {}
    for name in names:
        for form in forms_of(name):
            seen.setdefault(form, None)
    return tuple(seen)
