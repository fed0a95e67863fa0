"""What kind of fact a question asks for, and whether a clause states one.

"How many days after I delete my account is my data erased?" is answered by a clause that
gives a number of days, not by one that only says data is deleted. Similarity cannot tell
the two apart (the clause is on topic), and such questions were the commonest near-misses on
the realistic splits: a number of days or hours, a fee, a minimum age, a phone number, an
email address or a date the policy never gives. A question asking for such a fact is answered only
from a clause that states one.

The cues are deliberately narrow: a number with its unit ("how many days", "berapa biaya",
"minimum age"), a deadline ("paling lambat"), a phone number or email address to use, or the
date the policy took effect or was last updated. "How long do you keep my data?" and "berapa
lama" are answered by a condition ("as long as the account is active"), "how quickly" by
"within a reasonable time", and "jam berapa gue masuk" asks whether the log-in time is
recorded: none of them is a cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: "contact" is a question that takes a phone number or an email address ("Nomor telepon atau
#: email CS berapa?"); "phone" and "email" take only that one.
FactKind = Literal["number", "phone", "email", "contact", "date"]

_UNITS_EN = (r"(?:business\s+|working\s+|calendar\s+)?(?:days|hours|weeks|months|years|minutes"
             r"|times|characters|digits|percent)")
_MONEY_EN = r"(?:cost|costs|fee|fees|charge|charges|pay|price|money|commission)"
_UNITS_ID = r"(?:hari|jam|minggu|bulan|tahun|menit|kali|karakter|digit|persen)"
_MONEY_ID = r"(?:biaya|harga|ongkos|tarif|denda|komisi|bayar)"
# A number is asked for only with its unit ("how many days", "berapa biaya"): "How much data
# do you collect?" and "berapa banyak" are answered by a list, not a number.
_NUMBER_CUES = re.compile(
    rf"\bhow\s+many\s+(?:more\s+)?{_UNITS_EN}\b|\bhow\s+much\b[^?]*\b{_MONEY_EN}\b"
    r"|\b(?:minimum|maximum|min\.?|max\.?)\s+age\b|\bwhat\s+age\b|\bhow\s+old\s+do\b"
    r"|\b(?:umur|usia)\s+(?:minimal|minimum|maksimal)\b|\bpaling\s+lambat\b"
    rf"|\bberapa\s+{_UNITS_ID}\b|\bberapa\s+{_MONEY_ID}\b"
    rf"|\b{_MONEY_ID}\b[^?]*\bberapa\b(?!\s+lama\b)",
    re.IGNORECASE,
)
_CONTACT_CUES = re.compile(
    r"\bwhat(?:'s|\s+is)\s+(?:the|their|its)\s+(?:\w+\s+){0,4}?"
    r"(?:phone|telephone|e-?mail|whatsapp)\b"
    r"|\b(?:phone|telephone)\s+number\s+(?:of|for)\b|\be-?mail\s+address\s+(?:of|for)\b"
    r"|\bhow\s+(?:do|can)\s+i\s+(?:e-?mail|call|phone|ring)\b"
    r"|\b(?:nomor|no\.?)\s+(?:telepon|telp|hp|wa|whatsapp)\b[^?]*\b(?:berapa|apa)\b"
    r"|\b(?:apa|berapa)\s+(?:nomor|no\.?|alamat)\s+(?:telepon|telp|hp|wa|whatsapp|e-?mail)\b"
    r"|\b(?:alamat\s+)?e-?mail(?:nya)?\b[^?]*\b(?:berapa|apa)\s*\??\s*$",
    re.IGNORECASE,
)
# When the policy took effect or was last changed: answered by a date, not by "from time to
# time". ("Will they tell me when the policy changes?" asks whether, not when.)
_DATE_CUES = re.compile(
    r"\bwhen\s+(?:did|does|was|will)\b[^?]*\b(?:take|took|come|came|go|went)\s+(?:into\s+)?"
    r"(?:effect|force)\b|\beffective\s+date\b|\b(?:last|latest)\s+(?:updated|revised)\b"
    r"|\bwhen\s+(?:was|did)\b[^?]*\b(?:last\s+)?(?:updated|revised|published)\b"
    r"|\btanggal\s+(?:mulai\s+)?(?:berlaku|berlakunya|efektif)\b|\bberlaku\s+(?:sejak|mulai)\s+kapan\b"
    r"|\bkapan\b[^?]*\b(?:mulai\s+)?(?:berlaku|berlakunya|diperbarui|diperbaharui)\b"
    r"|\bterakhir\s+(?:diperbarui|diperbaharui|diubah)\b",
    re.IGNORECASE,
)
_MONTHS = (r"january|february|march|april|june|july|august|september|october|november|december"
           r"|januari|februari|maret|mei|juni|juli|agustus|oktober|desember")
_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|twenty|thirty"
    r"|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
    r"|satu|dua|tiga|empat|lima|enam|tujuh|delapan|sembilan|sepuluh|sebelas|\w+\s+belas"
    r"|\w+\s+puluh|seratus|\w+\s+ratus|seribu|\w+\s+ribu"
)
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\[email\s+protected\]")
_PHONE_WORDS = re.compile(r"\b(?:phone|telephone|call|ring|telepon|telp|hp|wa|whatsapp)\b",
                          re.IGNORECASE)
_EMAIL_WORDS = re.compile(r"\be-?mail", re.IGNORECASE)
_STATES: dict[FactKind, re.Pattern[str]] = {
    # "Free of charge" answers "how much is the fee?" as well as a figure does.
    "number": re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b|\bfree\b|\bno\s+(?:charge|fee|cost)\b"
                         r"|\bgratis\b|\b(?:tanpa|tidak\s+dikenakan|bebas)\s+biaya\b",
                         re.IGNORECASE),
    "phone": _PHONE,
    # "[email protected]" is how the seed's scraped pages show an address they hid: the policy
    # does give one there ("please send an email to …").
    "email": _EMAIL,
    "contact": re.compile(f"{_PHONE.pattern}|{_EMAIL.pattern}"),
    "date": re.compile(rf"\b(?:19|20)\d\d\b|\b(?:{_MONTHS})\b", re.IGNORECASE),
}


@dataclass(frozen=True)
class AskedFact:
    """A question asks for a fact of this kind; ``cue`` is the words that say so."""

    kind: FactKind
    cue: str


#: Contact first: "Nomor telepon CS berapa?" asks for a phone number, not any number.
_CUES: tuple[tuple[FactKind, re.Pattern[str]], ...] = (
    ("contact", _CONTACT_CUES), ("date", _DATE_CUES), ("number", _NUMBER_CUES))


def asked_fact(question: str) -> AskedFact | None:
    """The kind of fact the question asks for (in either language), if it asks for one."""
    for kind, cues in _CUES:
        found = cues.search(question)
        if found:
            if kind == "contact":
                phone, email = _PHONE_WORDS.search(question), _EMAIL_WORDS.search(question)
                kind = "phone" if phone and not email else "email" if email and not phone \
                    else "contact"
            return AskedFact(kind, " ".join(found.group(0).split()))
    return None


def states(kind: FactKind, text: str) -> bool:
    """Whether ``text`` gives a fact of this kind (any number; a phone number or an email
    address; a year or a month). Generous on purpose: a clause that merely contains a number
    still passes."""
    return bool(_STATES[kind].search(text))
