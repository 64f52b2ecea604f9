"""A user's bilingual dictionary (`--dictionary FILE`): it seeds the map and overrides the induced lexicon.

The file is MUSE's format, `source target` per line, the two words separated by spaces or tabs, read
like every other input (UTF-8, BOM and CRLF tolerated; see `unitrans.data.textfile`). Blank lines and
lines whose first character is `#` are skipped (a comment: MUSE files have none, and a `#` token is
punctuation, copied untranslated anyway). Any other line without exactly two fields is an error
`FILE:LINE: expected "source target"`. A source word may have several lines: every pair seeds the map,
the first target listed is the one that overrides.

Words are lowercased when the lexicon's types are (the default), so a dictionary applies to every casing
of a word and the translation policy restores the token's casing, exactly as for induced translations.

With a dictionary the result is no longer zero-resource: runs label it "dictionary-assisted", and no P@k
is ever computed for a map it seeded (the user's dictionary may be the very test dictionary).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from unitrans.data.textfile import decode_bytes, read_bytes, split_fields, split_lines
from unitrans.errors import InputError
from unitrans.translate.lexicon import Lexicon

SETTING = "dictionary-assisted"
"""How reports name results obtained with a user's dictionary (never the zero-resource headline)."""


@dataclass(frozen=True)
class UserDictionary:
    """The pairs of a dictionary file, in file order without repeats, and the file's SHA-256."""

    path: Path
    sha256: str
    pairs: tuple[tuple[str, str], ...]

    def first_targets(self) -> dict[str, str]:
        """source -> its first listed target (the override)."""
        out: dict[str, str] = {}
        for src, tgt in self.pairs:
            out.setdefault(src, tgt)
        return out


def read_user_dictionary(path: str | Path, *, lowercase: bool = True) -> UserDictionary:
    """Parse a MUSE dictionary file; one-line `InputError` for a malformed line or no pairs at all.

    The SHA-256 is of the very bytes parsed: a cache key records it instead of the path.
    """
    path = Path(path)
    data = read_bytes(path)
    text, _ = decode_bytes(path, data)
    pairs: dict[tuple[str, str], None] = {}
    for line_no, line in enumerate(split_lines(text), start=1):
        fields = split_fields(line)
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            found = f"found {len(fields)} field{'s' if len(fields) != 1 else ''}"
            raise InputError(path, line_no, f'expected "source target", {found}')
        src, tgt = (f.lower() for f in fields) if lowercase else fields
        pairs[(src, tgt)] = None
    if not pairs:
        raise InputError(path, None, 'expected "source target" lines, found none')
    return UserDictionary(path, hashlib.sha256(data).hexdigest(), tuple(pairs))


def override_lexicon(lexicon: Lexicon, dictionary: UserDictionary) -> Lexicon:
    """The lexicon with the dictionary's first target for every source word the dictionary covers.

    Only the lexicon's own source words (the source text's vocabulary) change; dictionary words the
    source text lacks are never needed. An overridden entry has no CSLS score (NaN), so `min_csls` never
    copies it: the user's word is taken as given.
    """
    first = dictionary.first_targets()
    targets = list(lexicon.target)
    score = lexicon.score.copy()
    covered = []
    for i, word in enumerate(lexicon.source):
        if word in first:
            targets[i] = first[word]
            score[i] = np.nan
            covered.append(word)
    return replace(lexicon, target=tuple(targets), score=score, from_dictionary=frozenset(covered))
