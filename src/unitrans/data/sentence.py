"""The one record type every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sentence:
    """A tokenized sentence; `tags` are IOB2 strings, or None for unlabelled text.

    `line` is the 1-based line in the source file where the sentence starts (for error messages).
    """

    words: tuple[str, ...]
    tags: tuple[str, ...] | None = None
    line: int = 0

    def __post_init__(self) -> None:
        if self.tags is not None and len(self.tags) != len(self.words):
            raise ValueError(f"{len(self.words)} words but {len(self.tags)} tags")

    def __len__(self) -> int:
        return len(self.words)

    def with_tags(self, tags: tuple[str, ...] | list[str] | None) -> Sentence:
        return Sentence(self.words, None if tags is None else tuple(tags), self.line)

    def unlabelled(self) -> Sentence:
        return Sentence(self.words, None, self.line)
