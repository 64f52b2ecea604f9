"""CoNLL I/O and label schemes."""

from unitrans.data.conll import ConllFile, read_conll, read_conll_file, write_conll
from unitrans.data.schemes import CONLL_LABELS, CONLL_TYPES, allowed_transitions
from unitrans.data.sentence import Sentence
from unitrans.data.unlabelled import read_unlabelled

__all__ = [
    "CONLL_LABELS",
    "CONLL_TYPES",
    "ConllFile",
    "Sentence",
    "allowed_transitions",
    "read_conll",
    "read_conll_file",
    "read_unlabelled",
    "write_conll",
]
