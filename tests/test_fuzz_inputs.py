"""Every command that reads files, fed malformed and unusual-but-legal inputs.

Malformed input must end with exit code 2 and exactly one `unitrans: error:` line on stderr, no
traceback and no output file; legal input must give every input word exactly one tag (`predict`) and
entity offsets that index the input text (`tag`). The cases are built by the tests themselves; one tiny
tagger is trained once for the module and serves `predict` and `tag`.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from unitrans.cli import main
from unitrans.data import Sentence
from unitrans.data.schemes import parse_tag
from unitrans.data.textfile import split_lines

GOOD_CONLL = "John B-PER\nvisited O\nMadrid B-LOC\n. O\n\nthe O\nman O\n"
GOOD_TEXT = "John visited Madrid .\nthe man\n"
GOOD_DICT = "john juan\nthe el\n"


@dataclass(frozen=True)
class Case:
    """An input file: how to make it, and, for legal ones, the words `predict` must tag in order."""

    make: Callable[[Path], Path]
    words: tuple[str, ...] | None = None
    stdin: bytes | None = None  # the same input as stdin bytes, for `tag` (None: no byte form)


def _bytes(data: bytes, words: tuple[str, ...] | None = None, *, stdin: bool = True) -> Case:
    def make(folder: Path) -> Path:
        path = folder / "input.txt"
        path.write_bytes(data)
        return path

    return Case(make, words, data if stdin else None)


def _text(text: str, words: tuple[str, ...] | None = None, encoding: str = "utf-8") -> Case:
    return _bytes(text.encode(encoding), words)


def _directory(folder: Path) -> Path:
    (folder / "a-folder").mkdir()
    return folder / "a-folder"


def _missing(folder: Path) -> Path:
    return folder / "no-such-file.txt"


def _symlink_loop(folder: Path) -> Path:
    os.symlink(folder / "loop-b", folder / "loop-a")
    os.symlink(folder / "loop-a", folder / "loop-b")
    return folder / "loop-a"


def _broken_symlink(folder: Path) -> Path:
    os.symlink(folder / "gone.txt", folder / "link.txt")
    return folder / "link.txt"


def _unreadable(folder: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads files without read permission")
    path = folder / "secret.txt"
    path.write_text(GOOD_CONLL)
    path.chmod(0)
    return path


def _through_a_file(folder: Path) -> Path:
    (folder / "plain.txt").write_text(GOOD_CONLL)
    return folder / "plain.txt" / "child.txt"


BOM8, BOM16 = codecs.BOM_UTF8, codecs.BOM_UTF16_LE
MIXED = "España B-LOC\n".encode() + "España B-LOC\n".encode("latin-1")

# Rejected by every reader, `tag` and the dictionary reader included.
UNREADABLE: dict[str, Case] = {
    "empty": _bytes(b""),
    "blank-lines": _bytes(b"\n\n  \n\t\r\n"),
    "bom-only": _bytes(BOM8),
    "bom-and-blank-lines": _bytes(BOM8 + b"\r\n \r\n"),
    "nul-bytes": _bytes(b"John B-PER\x00\nvisited O\n"),
    "binary-png": _bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\xff\xd8"),
    "binary-gzip": _bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x07\x00"),
    "utf16-without-bom": _text("John B-PER\nvisited O\n", encoding="utf-16-le"),
    "utf8-then-latin1": _bytes(MIXED),
    "latin1-then-utf8": _bytes(b"Espa\xf1a B-LOC\n" + "España B-LOC\n".encode()),
    "utf8-bom-then-latin1": _bytes(BOM8 + b"Espa\xf1a B-LOC\n"),
    "utf16-odd-length": _bytes(BOM16 + "John B-PER\n".encode("utf-16-le") + b"A"),
    "utf16-lone-surrogate": _bytes(BOM16 + "John B-PER\n".encode("utf-16-le") + b"\x00\xd8x\x00 \x00O\x00"),
    "utf16-nul-character": _bytes(BOM16 + "John\x00 B-PER\n".encode("utf-16-le")),
    "directory": Case(_directory),
    "missing": Case(_missing),
    "symlink-loop": Case(_symlink_loop),
    "broken-symlink": Case(_broken_symlink),
    "no-read-permission": Case(_unreadable),
    "path-through-a-file": Case(_through_a_file),
}

# Rejected by the readers of labelled files; unlabelled readers take them as text (every word kept).
LABELLED_ONLY: dict[str, Case] = {
    "tag-missing-on-a-line": _text("John B-PER\nvisited\nMadrid B-LOC\n",
                                   ("John", "B-PER", "visited", "Madrid", "B-LOC")),
    "unknown-prefix": _text("John X-PER\nvisited O\n", ("John", "X-PER", "visited", "O")),
    "outside-with-type": _text("John O-PER\nvisited O\n", ("John", "O-PER", "visited", "O")),
    "numbers-as-tags": _text("John 1\nvisited 0\n", ("John", "1", "visited", "0")),
    "tag-without-type": _text("John B-\nvisited O\n", ("John", "B-", "visited", "O")),
    "double-dash-tag": _text("John B--PER\nvisited O\n", ("John", "B--PER", "visited", "O")),
    "lowercase-tag": _text("John b-per\nvisited o\n", ("John", "b-per", "visited", "o")),
    "inconsistent-columns": _text("John NNP B-PER\nvisited O\n", ("John", "NNP", "B-PER", "visited", "O")),
    "trailing-garbage": _text(GOOD_CONLL + "\n%%garbage%%\n",
                              ("John", "B-PER", "visited", "O", "Madrid", "B-LOC", ".", "O",
                               "the", "O", "man", "O", "%%garbage%%")),
    "one-column-tokens": _text("John\nvisited\n\nMadrid\n", ("John", "visited", "Madrid")),
    "plain-sentences": _text(GOOD_TEXT, ("John", "visited", "Madrid", ".", "the", "man")),
    "docstart-then-words": _text("-DOCSTART- Madrid is nice\nJohn B-PER\n",
                                 ("-DOCSTART-", "Madrid", "is", "nice", "John", "B-PER")),
}  # fmt: skip

# Rejected only under an explicit --scheme (data stats, evaluate).
SCHEME_ERRORS: dict[str, tuple[Case, str]] = {
    "e-tag-under-iob2": (_text("John S-PER\nvisited O\nMr E-PER\n"), "IOB2"),
    "s-tag-under-iob1": (_text("John I-PER\nvisited O\nParis S-LOC\n"), "IOB1"),
    "bad-scheme-name": (_text(GOOD_CONLL), "BILOU"),
}

LONG_WORD = "x" * 50_000
LONG_SENTENCE = tuple(f"w{i}" for i in range(1500))
CRLF = GOOD_CONLL.replace("\n", "\r\n")
GOOD_WORDS = ("John", "visited", "Madrid", ".", "the", "man")

# Legal everywhere: every word of them gets one tag.
VALID: dict[str, Case] = {
    "plain": _text(GOOD_CONLL, GOOD_WORDS),
    "crlf": _text(CRLF, GOOD_WORDS),
    "cr-only": _text(GOOD_CONLL.replace("\n", "\r"), GOOD_WORDS),
    "no-final-newline": _text(GOOD_CONLL.rstrip("\n"), GOOD_WORDS),
    "tabs-and-spaces": _text("John \t B-PER\n\tvisited  O \nMadrid\tB-LOC\n. O\n\n\n\nthe O\nman\t\tO\n",
                             GOOD_WORDS),
    "utf8-bom-crlf": _bytes(BOM8 + CRLF.encode(), GOOD_WORDS),
    "utf16-bom": _bytes(BOM16 + GOOD_CONLL.encode("utf-16-le"), GOOD_WORDS),
    "latin1-only": _text("España B-LOC\nvisitó O\n\nJosé B-PER\n", ("España", "visitó", "José"), "latin-1"),
    "docstart-blocks": _text("-DOCSTART- -X- -X- O\n\nJohn NNP I-NP B-PER\nvisited VBD I-VP O\n\n"
                             "-DOCSTART- -X- -X- O\nMadrid NNP I-NP B-LOC\n", ("John", "visited", "Madrid")),
    "custom-type": _text("John B-FOO\nvisited O\n", ("John", "visited")),
    "iob1": _text("John I-PER\nSmith I-PER\nvisited O\n", ("John", "Smith", "visited")),
    "bioes": _text("John B-PER\nSmith E-PER\nvisited O\nMadrid S-LOC\n",
                   ("John", "Smith", "visited", "Madrid")),
    "inside-after-outside": _text("the O\nMadrid I-LOC\n", ("the", "Madrid")),
    "unicode-oddities": _text("São\u00a0Paulo B-LOC\n\u200b O\nJose\u0301 B-PER\n\U0001f600 O\nمدريد B-LOC\n",
                              ("São\u00a0Paulo", "\u200b", "Jose\u0301", "\U0001f600", "مدريد")),
    "very-long-word": _text(f"{LONG_WORD} O\nMadrid B-LOC\n", (LONG_WORD, "Madrid")),
    "very-long-sentence": _text("".join(f"{w} O\n" for w in LONG_SENTENCE), LONG_SENTENCE),
}  # fmt: skip

DICT_ERRORS: dict[str, Case] = {
    "dict-three-fields": _text("john juan jon\n"),
    "dict-one-field": _text("john juan\nthe\n"),
}


@pytest.fixture(scope="module")
def setup(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good companion files and a tiny trained tagger, shared by all cases."""
    from unitrans.train.supervised import TrainConfig, train_tagger

    root = tmp_path_factory.mktemp("fuzz-setup")
    (root / "good.txt").write_text(GOOD_CONLL)
    (root / "good_text.txt").write_text(GOOD_TEXT)
    (root / "dict.txt").write_text(GOOD_DICT)
    train = [Sentence(("John", "visited", "Madrid", "."), ("B-PER", "O", "B-LOC", "O"))] * 4
    config = TrainConfig(encoder=str(tiny_encoder_dir), epochs=1, lr=5e-3, batch_size=4, freeze_layers=0,
                         max_length=32, device="cpu")  # fmt: skip
    model = train_tagger(train, root / "model", config, progress=False)
    return {"root": root, "model": model, "encoder": tiny_encoder_dir}


def _command(name: str, path: Path, s: dict[str, Path], out: Path) -> list[str]:
    """The argv feeding `path` to one file-reading place of one command."""
    good, text, enc = str(s["root"] / "good.txt"), str(s["root"] / "good_text.txt"), str(s["encoder"])
    lexicon = ["lexicon", "eval", "--encoder", enc, "--cache-dir", str(out.parent / "cache")]
    return {
        "data-stats": ["data", "stats", str(path)],
        "evaluate-gold": ["evaluate", "--gold", str(path), "--pred", good],
        "evaluate-pred": ["evaluate", "--gold", good, "--pred", str(path)],
        "evaluate-pred-only": ["evaluate", "--pred", str(path)],
        "train": ["train", "--train", str(path), "--out", str(out), "--encoder", enc],
        "translate-source": ["translate", "--source", str(path), "--target-text", text, "--out", str(out),
                             "--encoder", enc],
        "translate-target": ["translate", "--source", good, "--target-text", str(path), "--out", str(out),
                             "--encoder", enc],
        "lexicon-source": [*lexicon, "--source-text", str(path), "--target-text", text,
                           "--dict", str(s["root"] / "dict.txt")],
        "lexicon-target": [*lexicon, "--source-text", text, "--target-text", str(path),
                           "--dict", str(s["root"] / "dict.txt")],
        "lexicon-dict": [*lexicon, "--source-text", text, "--target-text", text, "--dict", str(path)],
        "predict": ["predict", "--model", str(s["model"]), "--input", str(path), "--out", str(out)],
        "tag": ["tag", "--model", str(s["model"]), str(path)],
    }[name]  # fmt: skip


LABELLED_READERS = ("data-stats", "evaluate-gold", "evaluate-pred", "train", "translate-source")
UNLABELLED_READERS = ("translate-target", "lexicon-source", "lexicon-target", "predict")
ALL_READERS = (*LABELLED_READERS, "evaluate-pred-only", *UNLABELLED_READERS, "lexicon-dict", "tag")

REJECTED = [
    *((case, command) for case in UNREADABLE for command in ALL_READERS),
    *((case, command) for case in LABELLED_ONLY for command in LABELLED_READERS),
    *((case, "lexicon-dict") for case in DICT_ERRORS),
    ("docstart-only", "data-stats"),
    ("docstart-only", "predict"),
    ("docstart-only", "translate-target"),
]
CASES = {**UNREADABLE, **LABELLED_ONLY, **DICT_ERRORS, "docstart-only": _text("-DOCSTART- -X- -X- O\n\n")}


def _assert_one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("unitrans: error:")]
    assert len(errors) == 1, err
    assert err.strip().splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize(("case", "command"), REJECTED, ids=[f"{c}-{m}" for c, m in REJECTED])
def test_malformed_input_is_one_line_and_exit_2(case, command, setup, tmp_path, capsys):
    path = CASES[case].make(tmp_path)
    out = tmp_path / "out" / "result.txt"
    code = main(_command(command, path, setup, out))
    line = _assert_one_error_line(code, capsys.readouterr().err)
    assert path.name in line  # the line names the file
    assert not [p for p in out.parent.rglob("*") if p.is_file()]  # nothing written, not even a part


@pytest.mark.parametrize(("case", "scheme"), SCHEME_ERRORS.values(), ids=list(SCHEME_ERRORS))
@pytest.mark.parametrize("command", ["data-stats", "evaluate-pred"])
def test_scheme_violations_are_one_line(case, scheme, command, setup, tmp_path, capsys):
    path = case.make(tmp_path)
    code = main([*_command(command, path, setup, tmp_path / "out"), "--scheme", scheme])
    _assert_one_error_line(code, capsys.readouterr().err)


STDIN_CASES = [name for name, case in UNREADABLE.items() if case.stdin is not None]


@pytest.mark.parametrize("case", STDIN_CASES)
def test_malformed_stdin_of_tag_is_one_line(case, setup, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(UNREADABLE[case].stdin or b""))
    monkeypatch.setattr("sys.stdin", stdin)
    code = main(["tag", "--model", str(setup["model"])])
    line = _assert_one_error_line(code, capsys.readouterr().err)
    assert line.startswith("unitrans: error: <stdin>")


LEGAL = {**VALID, **LABELLED_ONLY}


@pytest.mark.parametrize("case", list(LEGAL))
def test_predict_tags_every_word_once(case, setup, tmp_path, capsys):
    path = LEGAL[case].make(tmp_path)
    out = tmp_path / "pred.txt"
    assert main(_command("predict", path, setup, out)) == 0, capsys.readouterr().err
    rows = [line.rsplit(" ", 1) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert tuple(word for word, _ in rows) == LEGAL[case].words
    assert all(parse_tag(tag) for _, tag in rows)


@pytest.mark.parametrize("case", list(VALID))
def test_labelled_readers_accept_legal_files(case, setup, tmp_path, capsys):
    path = VALID[case].make(tmp_path)
    assert main(["data", "stats", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{path}: " in out
    assert main(["evaluate", "--gold", str(path), "--pred", str(path), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["overall"]["f1"] in (0.0, 1.0)  # identical files: perfect, or nothing to find


@pytest.mark.parametrize("case", list(LEGAL))
def test_tag_offsets_index_the_input(case, setup, tmp_path, capsys):
    legal = LEGAL[case]
    path = legal.make(tmp_path)
    assert main(["tag", "--model", str(setup["model"]), str(path)]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    data = path.read_bytes()
    if data.startswith(BOM8):
        text = data.decode("utf-8-sig")
    elif data.startswith(BOM16):
        text = data.decode("utf-16")
    else:
        text = data.decode("latin-1" if case == "latin1-only" else "utf-8")
    assert [row["text"] for row in rows] == split_lines(text)
    for row in rows:
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["text"]


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [
        (["data", "stats", "{mixed}"], None),
        (["evaluate", "--gold", "{loop}", "--pred", "{mixed}"], None),
        (["tag", "--model", "{model}"], MIXED),
    ],
    ids=["data-stats-mixed", "evaluate-symlink-loop", "tag-stdin-mixed"],
)
def test_no_traceback_reaches_the_terminal(argv, stdin, setup, tmp_path):
    (tmp_path / "mixed.txt").write_bytes(MIXED)
    paths = {"mixed": tmp_path / "mixed.txt", "loop": _symlink_loop(tmp_path), "model": setup["model"]}
    args = [a.format(**paths) for a in argv]
    code = "import sys; from unitrans.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *args], input=stdin or b"", capture_output=True,
                          env=env, timeout=120)  # fmt: skip
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("unitrans: error: ")
