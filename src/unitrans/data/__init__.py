"""CoNLL I/O and label schemes."""

from unitrans.data.sentence import Sentence

__all__ = ["Sentence"]
