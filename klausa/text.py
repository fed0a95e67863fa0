"""Language analysis: detection (EN/ID), tokens, stemming, stopwords, the bilingual lexicon."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import snowballstemmer

from klausa.types import Language

log = logging.getLogger(__name__)

LANGUAGES: tuple[Language, ...] = ("en", "id")

# Negations are never stopwords: "kami tidak menjual" must not match "kami menjual".
NEGATIONS: dict[Language, frozenset[str]] = {
    "en": frozenset({"not", "no", "never", "nor", "without", "cannot"}),
    "id": frozenset({"tidak", "bukan", "belum", "tanpa", "jangan"}),
}


def _word_list(name: str) -> frozenset[str]:
    text = resources.files("klausa").joinpath(f"data/{name}").read_text("utf-8")
    return frozenset(
        word for line in text.splitlines() if not line.startswith("#") for word in line.split()
    )


STOPWORDS: dict[Language, frozenset[str]] = {
    language: _word_list(f"stopwords.{language}.txt") for language in ("en", "id")
}
# Words that mark a question's language even when it is only a few words long.
MARKERS: dict[Language, frozenset[str]] = {
    language: _word_list(f"markers.{language}.txt") for language in ("en", "id")
}
# "data" is both English and Indonesian; it decides nothing.
_SHARED_MARKERS = frozenset({"data"})

SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[\"“(\[]?[A-Z0-9])")
TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


#: Invisible characters that are not format or control characters: variation selectors, the
#: combining grapheme joiner, Mongolian selectors, Hangul fillers.
_IGNORABLE = re.compile(r"[\u034f\u115f\u1160\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
                        r"\U000e0100-\U000e01ef]")


def _visible(ch: str) -> str:
    if ch in "\n\t":
        return ch
    if ch.isspace():  # line and paragraph separators, NEL, form feed…: a word break
        return " "
    # Invisible characters inside a word ("se\u00adll", "Jub\x00elio", zero-width spaces,
    # bidi overrides, tag characters) are dropped, so the word is still the word.
    return "" if unicodedata.category(ch)[0] == "C" else ch


def normalise(text: str) -> str:
    """NFKC, whitespace kept as word breaks, invisible and control characters removed,
    typographic quotes folded."""
    text = _IGNORABLE.sub("", unicodedata.normalize("NFKC", text))
    text = "".join(_visible(ch) for ch in text)
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')


def words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in TOKEN.findall(normalise(text))]


_stemmers = threading.local()


def _stemmer(language: Language) -> snowballstemmer.Stemmer:
    """One stemmer per thread and language: snowball stemmers keep state while stemming."""
    cache = getattr(_stemmers, "by_language", None)
    if cache is None:
        cache = _stemmers.by_language = {}
    if language not in cache:
        cache[language] = snowballstemmer.stemmer("english" if language == "en" else "indonesian")
    return cache[language]


def stem(word: str, language: Language) -> str:
    if word.isdigit():
        return word
    word = word.split("'")[0] if language == "en" else word
    return _stemmer(language).stemWord(word)


@cache
def slang() -> dict[str, str]:
    """Informal Indonesian → the standard word the policies use ("nyimpen" → "menyimpan")."""
    text = resources.files("klausa").joinpath("data/slang.id.tsv").read_text("utf-8")
    pairs = (line.split("\t") for line in text.splitlines() if line and not line.startswith("#"))
    return {informal: standard for informal, standard in pairs}


def standardise(text: str) -> str:
    """A question with informal Indonesian words replaced, for analysis and embedding."""
    table = slang()
    return TOKEN.sub(lambda m: table.get(m.group(0).lower(), m.group(0)), text)


@cache
def indonesian_roots() -> frozenset[str]:
    """Sastrawi's dictionary of Indonesian root words (PySastrawi, MIT; 29,933 words)."""
    text = resources.files("Sastrawi").joinpath("Stemmer/data/kata-dasar.txt").read_text("utf-8")
    return frozenset(text.split())


_VOWELS = frozenset("aeiou")
#: Colloquial endings of a root's last syllable: "simpen", "pinjem", "catet", "pake".
_COLLOQUIAL_ENDINGS = (("en", "an"), ("em", "am"), ("et", "at"), ("e", "ai"))


def informal_root(word: str) -> str | None:
    """The root of an informal Indonesian verb the slang table does not list, when it has a
    colloquial mark and the dictionary knows the root: the suffix "-in" ("hapusin" → hapus,
    "nyelesain" → selesai) or a bare nasal prefix ("ngirim" → kirim, "nolak" → tolak, "nyebut"
    → sebut, "mantau" → pantau, "ngilangin" → hilang), also after "di-" and with a colloquial
    last syllable ("minjem" → pinjam, "menyimpen" → simpan). None for anything else: standard
    words are the stemmer's, and a loanword such as "internet" or "login" is left as it is."""
    roots = indonesian_roots()
    if word in roots or len(word) < 4 or not word.isalpha():
        return None
    if any(word.startswith(prefix) and word[len(prefix):] in roots
           for prefix in ("di", "ter", "ber", "ke", "se")):
        return None  # a standard prefix on a root ending in "in": "dijamin", "terjamin"
    if word.startswith(("meny", "meng", "mem", "men")) and word.endswith(("en", "em", "et")):
        word = word[2:]  # "menyimpen": a standard prefix on a colloquial root, as "nyimpen"
    bodies = []
    if word.endswith("in") and len(word) > 5:
        bodies = [word[:-2] + "i", word[:-2]] if word.endswith("ain") else [word[:-2]]
    nasal = (word.startswith(("ng", "ny")) or (word[0] in "nm" and word[1] in _VOWELS
                                                 and not word.startswith("me")))
    if not bodies and not nasal:
        return None
    for body in bodies or [word]:
        shorter = [body[2:]] if body.startswith("di") else []
        if body.startswith("nge"):
            shorter.append(body[3:])
        if body.startswith("ng"):
            shorter += [body[2:], "h" + body[2:], "k" + body[2:]]
        elif body.startswith("ny"):
            shorter += ["c" + body[2:], "s" + body[2:]]
        elif body[0] == "n" and body[1:2] in _VOWELS:
            shorter.append("t" + body[1:])
        elif body[0] == "m" and body[1:2] in _VOWELS and not body.startswith("me"):
            shorter.append("p" + body[1:])
        for candidate in [body, *shorter]:
            forms = [candidate] + [candidate[: -len(old)] + new for old, new in
                                   _COLLOQUIAL_ENDINGS if candidate.endswith(old)]
            for form in forms:
                if form != word and len(form) >= 3 + (candidate == body) and form in roots:
                    return form
    return None


def _term(word: str, language: Language, informal: bool) -> str:
    if informal and language == "id":
        word = informal_root(word) or word
    return stem(word, language)


def analyse(text: str, language: Language, *, informal: bool = False) -> list[str]:
    """Index/query terms of ``text``: stemmed, stopwords dropped, negations kept; with
    ``informal`` (a question), informal Indonesian verbs read as their roots."""
    stop = STOPWORDS[language]
    if language == "id":
        text = standardise(text)
    return [
        _term(w, language, informal)
        for w in words(text)
        if (w not in stop and len(w) > 1) or w in NEGATIONS[language]
    ]


# --- language detection ------------------------------------------------------------------


def detect_language(text: str) -> Language:
    """English or Indonesian. Marker words decide short questions; py3langid the rest."""
    tokens = [w for w in words(text) if w not in _SHARED_MARKERS]
    informal = slang()
    # Informal Indonesian ("nyimpen", "gue", "ga", "hp") is Indonesian evidence too: short
    # slangy questions have few standard marker words.
    id_score = sum(w in MARKERS["id"] or w in informal for w in tokens) + sum(
        1 for w in tokens if re.fullmatch(r"(di|me|ber|ter|pe)\w{3,}(kan|an|i|nya)", w)
    )
    en_score = sum(w in MARKERS["en"] for w in tokens) + sum(
        1 for w in tokens if re.fullmatch(r"\w{3,}(ing|tion|ed|ly)", w)
    )
    if (id_score != en_score and abs(id_score - en_score) >= 2) or len(tokens) <= 4:
        if id_score > en_score:
            return "id"
        if en_score > id_score:
            return "en"
    return _langid(text)


def load_language_identifier() -> None:
    """Load py3langid's model now (0.4 s), not in the first question whose marker words do
    not decide its language."""
    _identifier()


@cache
def _identifier():  # type: ignore[no-untyped-def]
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    # Restricted to what Klausa answers in (and Malay, see below).
    identifier.set_languages(["en", "id", "ms"])
    return identifier


def _langid(text: str) -> Language:
    if not any(ch.isalpha() for ch in text):
        return "en"
    language, _ = _identifier().classify(normalise(text))
    # Short Indonesian is often read as Malay; both mean "answer in Indonesian" here.
    return "en" if language == "en" else "id"


# --- the bilingual lexicon ---------------------------------------------------------------


@dataclass(frozen=True)
class LexiconEntry:
    en: tuple[tuple[str, ...], ...]  # stemmed phrases
    id: tuple[tuple[str, ...], ...]
    #: The phrases as matched: every word stemmed, stopwords kept ("what data" must not
    #: match every "data"). Empty → the analysed phrases above.
    en_words: tuple[tuple[str, ...], ...] = ()
    id_words: tuple[tuple[str, ...], ...] = ()

    def matched(self, language: Language) -> tuple[tuple[str, ...], ...]:
        return getattr(self, f"{language}_words") or getattr(self, language)


def stems(text: str, language: Language, *, informal: bool = False) -> list[str]:
    """Every word of ``text`` stemmed, stopwords kept as they are (a stemmed "berapa" would
    be "apa"): what lexicon phrases are matched on."""
    if language == "id":
        text = standardise(text)
    stop = STOPWORDS[language]
    return [w if w in stop else _term(w, language, informal) for w in words(text)]


class Lexicon:
    """EN↔ID privacy terms, matched on stemmed token sequences of a query."""

    def __init__(self, entries: Iterable[LexiconEntry]) -> None:
        self.entries = list(entries)
        self._index: dict[Language, dict[str, list[tuple[tuple[str, ...], int]]]] = {
            "en": {},
            "id": {},
        }
        for number, entry in enumerate(self.entries):
            for language in LANGUAGES:
                for phrase in entry.matched(language):
                    if phrase:
                        self._index[language].setdefault(phrase[0], []).append((phrase, number))

    @classmethod
    def parse(cls, text: str) -> Lexicon:
        entries = []
        for line_number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                english, indonesian = line.split("\t")
            except ValueError:
                log.warning("lexicon line %d ignored: expected one tab", line_number)
                continue
            entries.append(
                LexiconEntry(
                    en=tuple(tuple(analyse(p, "en")) for p in english.split("|")),
                    id=tuple(tuple(analyse(p, "id")) for p in indonesian.split("|")),
                    en_words=tuple(tuple(stems(p, "en")) for p in english.split("|")),
                    id_words=tuple(tuple(stems(p, "id")) for p in indonesian.split("|")),
                )
            )
        return cls(entries)

    def matches(self, terms: list[str], source: Language) -> list[int]:
        """Numbers of the entries whose ``source`` phrases occur in ``terms``, in order."""
        found: list[int] = []
        for i, term in enumerate(terms):
            for phrase, number in self._index[source].get(term, ()):
                if number not in found and tuple(terms[i : i + len(phrase)]) == phrase:
                    found.append(number)
        return found

    def translate(self, terms: list[str], source: Language) -> list[str]:
        """Terms of the other language for every lexicon phrase found in ``terms``."""
        target: Language = "id" if source == "en" else "en"
        found: list[str] = []
        for number in self.matches(terms, source):
            # The first phrase of the other side is its canonical translation.
            found.extend(getattr(self.entries[number], target)[0])
        negations = [t for t in terms if t in NEGATIONS[source]]
        if negations:
            found.append("not" if target == "en" else "tidak")
        return found

    def expand(self, terms: list[str], source: Language) -> tuple[list[str], list[str]]:
        """For every lexicon phrase found in ``terms``: the other phrases of its entry, as
        (other-language variants beyond the canonical translation, same-language synonyms)."""
        target: Language = "id" if source == "en" else "en"
        variants: list[str] = []
        synonyms: list[str] = []
        for number in self.matches(terms, source):
            entry = self.entries[number]
            variants.extend(t for phrase in getattr(entry, target)[1:] for t in phrase)
            synonyms.extend(t for phrase in getattr(entry, source) for t in phrase)
        return variants, synonyms


@cache
def default_lexicon() -> Lexicon:
    text = resources.files("klausa").joinpath("data/lexicon.tsv").read_text("utf-8")
    return Lexicon.parse(text)


@dataclass(frozen=True)
class QueryTerms:
    """A question's search terms by where they come from; each term in its first group only.
    Retrieval weighs the groups: the question's own words count most."""

    own: tuple[str, ...]
    translated: tuple[str, ...]  # canonical lexicon translations
    variants: tuple[str, ...]  # the lexicon's other wordings, in the other language
    synonyms: tuple[str, ...]  # the lexicon's other wordings, in the question's language
    raw: tuple[str, ...]  # words typed in the other language ("cookies", "OTP")

    GROUPS = ("own", "translated", "variants", "synonyms", "raw")
    #: Groups in the question's language; the others are in the other language.
    SAME_LANGUAGE = ("own", "synonyms")

    def all(self) -> list[str]:
        return list(dict.fromkeys(t for group in self.GROUPS for t in getattr(self, group)))


def query_term_groups(
    text: str, language: Language, lexicon: Lexicon | None = None
) -> QueryTerms:
    """Own-language terms, their lexicon translations and other wordings, and words typed in
    the other language, so BM25 crosses languages."""
    lexicon = lexicon or default_lexicon()
    terms = analyse(text, language, informal=True)
    other: Language = "id" if language == "en" else "en"
    sequence = stems(text, language, informal=True)
    translated = lexicon.translate(sequence, language)
    variants, synonyms = lexicon.expand(sequence, language)
    raw = [stem(w, other) for w in words(text) if w not in STOPWORDS[other] and len(w) > 1]
    # A term is kept in the first group of its language that has it (groups of the two
    # languages score different policies, so one word may be in both).
    seen: dict[bool, set[str]] = {True: set(), False: set()}
    groups = []
    for name, group in zip(QueryTerms.GROUPS, (terms, translated, variants, synonyms, raw),
                           strict=True):
        side = seen[name in QueryTerms.SAME_LANGUAGE]
        kept = [t for t in dict.fromkeys(group) if t not in side]
        side.update(kept)
        groups.append(tuple(kept))
    return QueryTerms(*groups)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in SENTENCE_END.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    return [(s, e) for s, e in spans if text[s:e].strip()]
