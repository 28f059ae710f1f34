"""The rules text must pass before a provider sees it: no personal data, no control or invisible
characters, and the slug form used in storage keys.

Personal data must never reach a provider ("NIEMALS sensitive info in Prompts"): the brief's field
types run `find_personal_data` and `check_prompt_characters` on every prompt part, and prompt
building runs `find_personal_data` again on the final text. `MAX_SEED` lives here because both the
brief (a subject's seed) and prompt building (derived seeds) bound seeds by it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# The largest seed a brief may set or a derived seed may take: a positive signed 32-bit integer.
MAX_SEED = 2**31 - 1

# --------------------------------------------------------------------------------------------
# Personal data
# --------------------------------------------------------------------------------------------

EMAIL = "email address"
PHONE = "phone number"
STREET = "street address"
CARD = "payment card number"
IBAN = "IBAN"
PERSONAL_DATA_KINDS = (EMAIL, PHONE, STREET, CARD, IBAN)

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Digits in groups separated by single spaces or hyphens; windows of 13-19 digits are tried.
_CARD_RE = re.compile(r"(?<![\w.+])(?:\d+(?:[ -]\d+)+|\d{13,19})(?!\w|\.\d)")

# Two letters, two check digits, then the account part in groups of up to four (spaces optional).
_IBAN_RE = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{1,4}){3,8}\b")
_IBAN_LENGTH = range(15, 35)

# A run of digits, spaces and the separators phone numbers use, optionally led by '+'. It may not
# touch a letter, '#' or '.' on either side, so sizes (1080x1350), hex colours and "4K" never match.
_PHONE_CANDIDATE_RE = re.compile(r"(?<![\w#.+])\+?[(\d][\d ()./-]{5,}\d(?![\w])")
_NANP_RE = re.compile(r"(?:1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}|\d{3}-\d{4}")
_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")

_EN_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
                    r"|Terrace|Square|Sq|Highway|Hwy|Parkway|Pkwy")
# "123 Main St", "42 Baker Street": a house number, one to three capitalised name words, a street
# word. Street words are capitalised, except the unambiguous ones ("123 Main street"): "a 2 Tone
# place" is not an address.
_EN_STREET_RE = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]*\s+){{1,3}}(?:{_EN_STREET_TYPES}|street|avenue|road|boulevard)\b")
# Lower-case "12 main st" is caught only with the abbreviations: "4 lane road" is not an address.
_EN_STREET_ABBREV_RE = re.compile(r"\b\d{1,5}\s+[a-z]+\s+(?:st|ave|rd|blvd)\b")
_DE_NAME = r"[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*"
# German street words, glued to the name ("Hauptstraße 5", "Kurfürstendamm 21", "Kaiser-Wilhelm-
# Straße 3") or separate ("Berliner Str. 12"). "Ring" is left out: "Wedding Ring 2", "earring 2".
_DE_STREET_WORDS = r"(?:straße|strasse|str\.|weg|allee|platz|gasse|damm|ufer|chaussee)"
_DE_STREET_RE = re.compile(
    rf"(?<![\w-]){_DE_NAME}(?:-?|\s+)(?i:{_DE_STREET_WORDS})\s*\d{{1,4}}\s?[a-zA-Z]?(?!\w)")
_STREET_PATTERNS = (_EN_STREET_RE, _EN_STREET_ABBREV_RE, _DE_STREET_RE)


def find_personal_data(text: str) -> list[str]:
    """The kinds of personal data in `text`, in a fixed order; empty when there is none.

    Kinds: "email address", "phone number", "street address", "payment card number" (Luhn-valid)
    and "IBAN" (mod-97 valid). Check digits keep long numbers that are not cards or IBANs out;
    the phone rules skip years, dates, sizes like 1080x1350, hex colours and "4K"/"8K".
    """
    found: set[str] = set()
    # Each finding is blanked before the next kind is looked for: an email's digits or a card's
    # digit groups would otherwise also read as a phone number.
    for kind, pattern, accept in (
        (EMAIL, _EMAIL_RE, lambda match: True),
        (IBAN, _IBAN_RE, lambda match: _is_iban(match.group())),
        (CARD, _CARD_RE, lambda match: _has_card_number(match.group())),
    ):
        text, hit = _blank_matches(text, pattern, accept)
        if hit:
            found.add(kind)
    if any(_is_phone_number(match.group()) for match in _PHONE_CANDIDATE_RE.finditer(text)):
        found.add(PHONE)
    if any(pattern.search(text) for pattern in _STREET_PATTERNS):
        found.add(STREET)
    return [kind for kind in PERSONAL_DATA_KINDS if kind in found]


def _blank_matches(text: str, pattern: re.Pattern[str], accept) -> tuple[str, bool]:
    """Replace accepted matches with spaces (keeping offsets) and say whether any was accepted."""
    hit = False

    def blank(match: re.Match[str]) -> str:
        nonlocal hit
        if accept(match):
            hit = True
            return " " * len(match.group())
        return match.group()

    return pattern.sub(blank, text), hit


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _has_card_number(candidate: str) -> bool:
    """True when some run of whole digit groups holds 13-19 digits and passes the Luhn check.

    Trying windows of groups finds a card number even when a year or a count sits next to it.
    """
    groups = re.split(r"[ -]", candidate)
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and len(set(digits)) > 1 and _luhn_valid(digits):
                return True
    return False


def _is_iban(candidate: str) -> bool:
    """True when a prefix of the candidate (ending at a group boundary) is a mod-97-valid IBAN."""
    groups = candidate.upper().split(" ")
    compact = ""
    for group in groups:
        compact += group
        if len(compact) in _IBAN_LENGTH and _iban_checksum_ok(compact):
            return True
    # Written without spaces the whole run is one group: try every length.
    if len(groups) == 1:
        return any(_iban_checksum_ok(compact[:n]) for n in _IBAN_LENGTH if n <= len(compact))
    return False


def _iban_checksum_ok(iban: str) -> bool:
    if not (iban.isascii() and iban[:2].isalpha() and iban[2:4].isdigit() and iban[4:].isalnum()):
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _is_phone_number(candidate: str) -> bool:
    candidate = candidate.strip()
    digits = re.sub(r"\D", "", candidate)
    if candidate.startswith("+"):
        return 8 <= len(digits) <= 15
    if digits.startswith("00"):  # international prefix written as 00
        return 8 <= len(digits) - 2 <= 15
    if _DATE_RE.fullmatch(candidate):
        return False
    if _NANP_RE.fullmatch(candidate):
        return True
    # National numbers with a trunk prefix: 030 1234567, 0171-1234567, 01 23 45 67 89. Dots are
    # left out here so a run of decimals ("0.5 0.75 0.9") is not a number.
    return digits.startswith("0") and "." not in candidate and 7 <= len(digits) <= 13


# --------------------------------------------------------------------------------------------
# Control and invisible characters
# --------------------------------------------------------------------------------------------

# Invisible and control characters in prompt text.
#
# A prompt part must read the same to the person who wrote it, to the provider, and in the catalog and
# XMP. Characters that render as nothing or reorder what is shown break that, so they are refused:
#   - control characters (Unicode Cc) such as NUL or ESC, and lone surrogates (Cs, not valid text);
#   - format characters (Cf): bidi controls (U+202A-202E, U+2066-2069, LRM/RLM, ALM), zero-width
#     space U+200B, word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, ...;
#   - the Hangul fillers, letters that render as blank and are a known way to fake "empty" text.
# Exceptions, because real text needs them: the zero-width joiner and non-joiner (U+200D, U+200C)
# between two letters, marks, digits or symbols (emoji ZWJ sequences such as woman + ZWJ + laptop,
# Indic conjuncts, Persian words), and tag characters inside an emoji subdivision flag (black flag,
# tags, cancel tag). Emoji variation selectors (U+FE0E/U+FE0F) and skin-tone modifiers are not format
# characters and pass anyway.
# Line breaks and tabs (a YAML block scalar carries them; so can a pasted subject) are not refused:
# each one, with the spaces around it, becomes a single space, so what is stored is one line.
_LINE_BREAK_RUN = re.compile(r"[ \u00a0]*[\t\n\v\f\r\x85\u2028\u2029][\t\n\v\f\r\x85\u2028\u2029 \u00a0]*")
_HANGUL_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
_JOINERS = frozenset("\u200c\u200d")
_FLAG_TAG_SEQUENCE = re.compile("\U0001F3F4([\U000E0020-\U000E007E]+\U000E007F)")
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"})


def _code_point(char: str) -> str:
    """'U+202E RIGHT-TO-LEFT OVERRIDE' (control characters have no name: 'U+0000')."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def _invisible_kind(char: str) -> str | None:
    """What kind of refused character `char` is, or None when it may appear in prompt text."""
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character"
    if category == "Cs":
        return "a lone surrogate"
    if char in _BIDI_CONTROLS:
        return "a bidirectional-text control"
    if category == "Cf":
        return "an invisible formatting character"
    if char in _HANGUL_FILLERS:
        return "an invisible filler character"
    return None


def _is_visible(char: str) -> bool:
    """False for spaces, marks without a base, format and control characters and blank fillers."""
    return not (unicodedata.category(char) in _INVISIBLE_CATEGORIES or char in _HANGUL_FILLERS
                or char == "\u2800" or char.isspace())


def _joins_visible_characters(text: str, index: int) -> bool:
    """A ZWJ/ZWNJ at `index` sits between two letters, marks, digits or symbols (an emoji ZWJ
    sequence, an Indic conjunct, a Persian word), not at an edge, beside a space or another joiner."""
    if index == 0 or index == len(text) - 1:
        return False
    before, after = unicodedata.category(text[index - 1]), unicodedata.category(text[index + 1])
    return before[0] in "LMNS" and after[0] in "LMNS"


def check_prompt_characters(value: Any) -> Any:
    """Refuse control and invisible characters in prompt text; turn line breaks and tabs into spaces.

    Runs before pydantic's own checks, on the text as written, so positions in messages count from
    the field's first character. Messages name the code point, never echo the text.
    """
    if not isinstance(value, str):
        return value  # pydantic's type check reports it
    allowed_tags = {i for match in _FLAG_TAG_SEQUENCE.finditer(value) for i in range(*match.span(1))}
    refused: list[tuple[int, str, str]] = []
    for index, char in enumerate(value):
        if char in "\t\n\v\f\r\x85\u2028\u2029" or index in allowed_tags:
            continue
        if char in _JOINERS and _joins_visible_characters(value, index):
            continue
        kind = _invisible_kind(char)
        if kind:
            refused.append((index, char, kind))
    if not any(_is_visible(c) for c in value):
        if not refused and all(c.isspace() for c in value):
            return value  # blank: strip + min_length decide ("must not be empty", or an allowed empty mood)
        shown = ", ".join(dict.fromkeys(_code_point(c) for c in value if c not in " \t\n\r"))
        raise ValueError(f"has no visible characters (only {shown})")
    if refused:
        index, char, kind = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        found = f"contains {kind} ({_code_point(char)}) at position {index + 1}{more}"
        if char in _JOINERS:
            raise ValueError(f"{found} that joins nothing; a joiner is allowed only between letters or inside "
                             "an emoji sequence")
        if unicodedata.category(char) == "Cs":
            raise ValueError(f"{found}, which is not valid Unicode text; remove it")
        if char in _BIDI_CONTROLS:
            raise ValueError(f"{found}, which changes how the text is displayed, not what it says; remove it")
        raise ValueError(f"{found}; remove it")
    return _LINE_BREAK_RUN.sub(" ", value)


# --------------------------------------------------------------------------------------------
# Slugs
# --------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """Lowercase ASCII letters, digits and single hyphens ('Café Crème!' -> 'cafe-creme')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
