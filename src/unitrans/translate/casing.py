"""How a translated word is cased: the policies of `TranslateConfig.casing`, kept apart from the translation.

A word-by-word translation takes its words from a lowercased lexicon, so the case has to be put back:
like the source word (`source`), like the target text usually writes the word (`target`: what German's
capitalised nouns need), as the lexicon has it (`lexicon`), or `auto`, which picks `target` only for a
target language that capitalises more than the source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from unitrans.data import Sentence

CASINGS = ("auto", "source", "target", "lexicon")


def casing_pattern(word: str) -> str:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return "none"
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return "upper"
    if letters[0].isupper():
        return "title" if all(c.islower() for c in letters[1:]) else "mixed"
    return "lower"


def apply_casing(source_word: str, translation: str, usual: str | None, policy: str) -> str:
    """Case `translation` by the policy; `usual` is its most frequent form in the target text."""
    if policy == "lexicon":
        return translation
    pattern = casing_pattern(source_word)
    if pattern == "upper":
        return translation.upper()
    base = usual if (policy == "target" and usual) else translation.lower()
    if pattern in ("title", "mixed"):
        return base[:1].upper() + base[1:]
    return base


def capitalised_share(sentences: Sequence[Sentence]) -> float:
    """Share of capitalised words among the words with letters after the first of each sentence."""
    words = [w for s in sentences for w in s.words[1:] if any(c.isalpha() for c in w)]
    return sum(w[0].isupper() for w in words) / len(words) if words else 0.0


def resolve_casing(casing: str, source: Sequence[Sentence], target_text: Sequence[Sentence]) -> str:
    """`auto` → `target` when the target language capitalises more than the source, else `source`.

    `target` only changes lowercase source words, giving them their usual target form. That is what a
    language that capitalises every noun needs (CoNLL German: 33% of non-initial words capitalised,
    English 23%; it changes 17% of the German D_trans tokens, "Prozent", "Regierung"). In a language that
    capitalises less (es 13%, nl 11%, no 8%) it changes under 2% of the tokens, mostly words of
    institution names that the English data labels O ("Gobierno", "Policía"). `auto` skips those.
    """
    if casing != "auto":
        return casing
    return "target" if capitalised_share(target_text) > capitalised_share(source) else "source"


def usual_forms(target_text: Sequence[Sentence], lowercase: bool) -> dict[str, str]:
    """Most frequent spelling of each type in the target text, sentence-initial tokens counted last."""
    inner, initial = Counter(), Counter()
    for sent in target_text:
        for i, w in enumerate(sent.words):
            (initial if i == 0 else inner)[w] += 1
    best: dict[str, tuple[int, int, str]] = {}
    for w in set(inner) | set(initial):
        key = w.lower() if lowercase else w
        rank = (inner[w], initial[w], w)
        if key not in best or rank > best[key]:
            best[key] = rank
    return {k: v[2] for k, v in best.items()}
