"""Before searching: which policies a question is about, and which earlier questions of the
conversation a follow-up borrows its topic from."""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass

from klausa.catalog import Catalog
from klausa.text import LANGUAGES, STOPWORDS, analyse, words
from klausa.types import Answer, Turn

FOLLOW_UP_CUES = re.compile(
    r"^(and|but|also|what about|how about|then|so|dan|lalu|terus|kalau|bagaimana dengan|"
    r"gimana dengan|juga|trus)\b|\b(it|they|them|this|that|those|these|its|their|itu|"
    r"tersebut|ini|mereka)\b|\w+nya\b",
    re.I,
)
FOLLOW_UP_MAX_WORDS = 8
#: The words of a question that asks nothing of its own: "What about Interindo?", "And
#: Netmarks?", "Kalau Interindo gimana?", "Bagaimana dengan Jubelio?". Kept to such words:
#: "Does LaciMart know where I am?" is all stop words and asks something.
NO_TOPIC = frozenset(
    "what about how and also then so too else or with for at in of the same here there please "
    "ok okay kalau kalo klo gimana bagaimana dengan dgn dan terus trus lalu juga pula halnya "
    "sih dong ya deh nih kok aja saja di untuk buat yang sama soal tentang mengenai".split())
#: How many earlier questions a follow-up borrows its topic from (a chain of follow-ups).
FOLLOW_UP_DEPTH = 2

Mentions = list[tuple[str, re.Pattern[str]]]

#: A whole message that greets, asks what Klausa is, or thanks: no policy question in it.
_POLITE = r"(?:\s+(?:there|klausa|kak|min|gan|bot|ya|yah|so much|very much|banyak|a lot))*"
GREETING = re.compile(
    r"(?:hi|hello|hey|hallo|halo|hai|hei|good (?:morning|afternoon|evening)"
    r"|selamat (?:pagi|siang|sore|malam)|pagi|siang|sore|malam|assalamualaikum|help|bantuan"
    r"|what can you do|what do you do|who are you|what are you|how does this work"
    r"|apa yang bisa (?:kamu|anda) (?:lakukan|bantu)|kamu siapa|anda siapa|siapa kamu"
    r"|cara pakainya gimana|gimana cara pakainya)" + _POLITE)
THANKS = re.compile(
    r"(?:thanks|thank you|thank u|thx|ty|makasih|terima kasih|trims|tq|ok|okay|oke|sip"
    r"|mantap|great|bye|goodbye|dadah)" + _POLITE)


def small_talk(text: str) -> str | None:
    """"greeting" or "thanks" when the whole message is one ("hi", "what can you do?",
    "makasih ya"), else None."""
    plain = " ".join(words(text.lower()))
    if GREETING.fullmatch(plain):
        return "greeting"
    if THANKS.fullmatch(plain):
        return "thanks"
    return None


@dataclass(frozen=True)
class Scope:
    #: The policies searched; None: all of them.
    policies: list[str] | None
    #: The question without company names: the topic, not the name, should rank clauses.
    search_text: str
    #: The earlier questions a follow-up borrows its topic from (oldest first); empty when the
    #: question stands on its own.
    previous: list[str]
    #: ``search_text`` is the last question, asked again of the company now named ("What
    #: about Interindo?"); it may be in the other language.
    restated: bool = False

    @property
    def single_policy(self) -> str | None:
        return self.policies[0] if self.policies and len(self.policies) == 1 else None


#: A name this long or longer is also recognised typed with one slip ("Jubelo", "Webdesker",
#: "Net marks"), unless the slip spells a word the policies use ("Guardia" → "guardian").
SLIP_MIN_LENGTH = 6
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def slips(name: str) -> set[str]:
    """The spellings of ``name`` one typing slip away: a letter left out, swapped with the
    next, mistyped or added, or a space added inside."""
    name = name.lower()
    splits = [(name[:i], name[i:]) for i in range(len(name) + 1)]
    spellings = {a + b[1:] for a, b in splits if b}
    spellings |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    spellings |= {a + c + b[1:] for a, b in splits if b for c in LETTERS}
    spellings |= {a + c + b for a, b in splits for c in LETTERS}
    spellings |= {f"{a} {b}" for a, b in splits if a and b}
    return spellings - {name}


def mention_patterns(catalog: Catalog, vocabulary: Set[str] = frozenset()) -> Mentions:
    """Per policy, a pattern of the names users type for it (id, aliases, one-word company),
    and of their one-slip misspellings that are no word of ``vocabulary`` (the index's
    terms) nor a stop word."""
    names_of = {}
    for policy_id, policy in catalog.policies.items():
        info = policy.info
        names_of[policy_id] = {policy_id, *info.aliases}
        if len(info.company.split()) == 1:
            names_of[policy_id].add(info.company)
    # The names are terms of the index too ("netmark"): a slip that reads as one is still a name.
    words_known = set(vocabulary) - {term for names in names_of.values() for name in names
                                     for language in LANGUAGES for term in analyse(name, language)}

    def is_word(slip: str) -> bool:
        return any(slip in STOPWORDS[language] or set(analyse(slip, language)) & words_known
                   for language in LANGUAGES)

    patterns = []
    for policy_id, names in names_of.items():
        names |= {slip for name in names if len(name) >= SLIP_MIN_LENGTH
                  for slip in slips(name) if " " in slip or not is_word(slip)}
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        patterns.append((policy_id, re.compile(rf"\b({alternatives})\b", re.I)))
    return patterns


def strip_names(text: str, mentions: Mentions) -> str:
    for _, pattern in mentions:
        text = pattern.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def looks_like_follow_up(text: str) -> bool:
    return len(words(text)) <= FOLLOW_UP_MAX_WORDS or bool(FOLLOW_UP_CUES.search(text))


def has_topic(text: str) -> bool:
    """Whether a question (company names taken out) asks something of its own: "Does send
    my CV to companies?" does, "What about?" does not."""
    return any(word not in NO_TOPIC for word in words(text))


def find_scope(text: str, policy: str | None, turns: Sequence[Turn], catalog: Catalog,
               mentions: Mentions) -> Scope:
    """The policy chosen, else the companies the question names, else (a follow-up) the
    policy of the last answer, else all; and the earlier questions a follow-up reads with."""
    mentioned = [pid for pid, pattern in mentions if pattern.search(text)]
    policies: list[str] | None
    if policy:
        policies = [policy]
    elif mentioned:
        policies = mentioned
    elif turns and turns[-1].policy and turns[-1].policy in catalog.policies:
        policies = [turns[-1].policy]  # a follow-up stays on the policy it was about
    else:
        policies = None
    search_text = strip_names(text, mentions) or text
    previous: list[str] = []
    own_topic = has_topic(search_text)
    if turns and mentioned and not own_topic:
        # "What about Interindo?", "Kalau Netmarks?": the last question, asked of the company
        # named (with the topic that question borrowed, if it was a follow-up).
        last = turns[-1]
        restated = strip_names(last.question, mentions)
        if has_topic(restated):
            return Scope(policies, restated, [t for t in last.topic if t][-FOLLOW_UP_DEPTH:],
                         restated=True)
    # A question naming another company than the last answer's starts a new topic, however
    # short ("Will LaciMart give my data to the police?" after a question about Netmarks).
    changes_company = bool(mentioned) and bool(turns) and turns[-1].policy not in mentioned
    # So does one naming the same company again with a topic of its own and no word pointing
    # back ("Does Interindo send my CV to companies?" after its cookies); "Does Netmarks
    # delete it after that?" still follows up.
    starts_over = changes_company or (bool(mentioned) and own_topic
                                      and not FOLLOW_UP_CUES.search(search_text))
    if turns and looks_like_follow_up(search_text) and not starts_over:
        last = turns[-1]
        earlier = [*last.topic, strip_names(last.question, mentions)]
        previous = [t for t in earlier if t][-FOLLOW_UP_DEPTH:]
    return Scope(policies, search_text, previous)


def as_turn(item: Turn | Answer | str) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, Answer):
        return item.as_turn()
    return Turn(question=str(item))
