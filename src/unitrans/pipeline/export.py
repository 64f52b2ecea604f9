"""Hand the user the model they came for: `<out>/models/<lang>/`, a complete folder with a model card.

A run's models live in the stage cache under content hashes; this module copies the chosen variant's
model (the first seed's) into a stable place, next to a Hugging Face model card (`README.md`) that says
how it was made and how well it did, and the label list (`labels.txt`). The folder is the same standard
checkpoint `unitrans tag/predict` and transformers load (a compact cached model is rebuilt and saved
complete, so the export needs no base encoder); it is built beside its final name and renamed
into place, so a folder under `models/` is always whole. Unchanged exports are not copied again.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from unitrans import __version__
from unitrans.atomic import apply_umask_modes, write_text_atomic
from unitrans.model.predict import model_labels
from unitrans.pipeline.config import PipelineConfig, make_config
from unitrans.pipeline.variants import VARIANTS, report_rows, row_title

EXPORT_RECORD = "export.json"
CARD = "README.md"
LABELS = "labels.txt"
NOT_IN_COMMAND = (
    "targets",
    "preset",
    "workers",
    "executor",
    "ray_address",
    "verify",
    "share_states",
    "export",
    "out_dir",
    "cache_dir",
    "data_dir",
)
"""Settings the card's command shows otherwise (targets, --out) or that change no number."""


def default_export(config: PipelineConfig) -> tuple[str, ...]:
    """What a run exports: the `export` setting, else UniTrans when it ran, else the last variant run."""
    if config.export:
        return config.export
    return ("unitrans",) if "unitrans" in config.variants else (config.variants[-1],)


def export_folder(out_dir: Path, lang: str, variant: str, primary: bool) -> Path:
    """`models/<lang>` for the first exported variant, `models/<lang>-<variant>` for the others."""
    return Path(out_dir) / "models" / (lang if primary else f"{lang}-{variant}")


def command_line(config: PipelineConfig) -> str:
    """The `unitrans run` call that recomputes this run's numbers: the preset plus what differs from it."""
    base = make_config(config.preset, targets=config.targets)
    parts = ["unitrans", "run", "--preset", config.preset, "--target", *config.targets]
    if config.data_dir != base.data_dir:
        parts += ["--data-dir", str(config.data_dir)]
    for f in fields(PipelineConfig):
        value, default = getattr(config, f.name), getattr(base, f.name)
        if f.name in NOT_IN_COMMAND or value == default:
            continue
        if isinstance(value, tuple):
            text = ",".join(str(v) for v in value)
        elif value is None:
            text = "none"
        else:
            text = str(value)
        parts += ["--set", f"{f.name}={text}"]
    parts += ["--out", str(config.out_dir)]
    return shlex.join(parts)


HUB_NAMES = {
    "me5-small": "intfloat/multilingual-e5-small",
    "embeddinggemma-300m": "google/embeddinggemma-300m",
}
"""unitrans's names of encoders it builds offline -> the hub models they reproduce."""


def hub_name(encoder: str) -> str | None:
    """The card's `base_model`: the hub name of the encoder; None for a local folder."""
    if encoder in HUB_NAMES:
        return HUB_NAMES[encoder]
    return None if Path(encoder).expanduser().exists() else encoder


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _f1_text(summary: Mapping[str, Any]) -> str:
    seeds = summary.get("per_seed", ())
    if len(seeds) > 1 and summary.get("f1_std") is not None:
        per = ", ".join(f"{_percent(r['f1'])} (seed {r['seed']})" for r in seeds)
        return f"{_percent(summary['f1'])} ± {_percent(summary['f1_std'])} over {len(seeds)} seeds: {per}"
    return f"{_percent(summary['f1'])} (seed {seeds[0]['seed']})" if seeds else _percent(summary["f1"])


def model_card(
    config: PipelineConfig,
    lang: str,
    variant: str,
    seed: int,
    labels: Sequence[str],
    results: Mapping[str, Mapping[str, Any]],
    *,
    folder: Path,
    pipeline_ready: bool,
) -> str:
    """A Hugging Face model card: YAML front matter, then how the model was made and how it scored."""
    summary = results[variant]
    assisted = config.dictionary is not None  # a separate setting, never sold as zero-resource
    setting_tag = "dictionary-assisted" if assisted else "zero-resource"
    setting = setting_tag.capitalize()
    types = sorted({lab.split("-", 1)[1] for lab in labels if "-" in lab})
    n_source, n_target = config.max_source_sentences, config.max_target_sentences
    merge = config.student_merge
    front = [
        "---",
        f"language: [{lang}]",
        "license: other",
        "license_name: encoder-and-data-terms",
        "library_name: transformers",
        "pipeline_tag: token-classification",
        f"tags: [token-classification, ner, {setting_tag}, cross-lingual, unitrans]",
        *([f"base_model: {hub}"] if (hub := hub_name(config.encoder)) else []),
        "model-index:",
        f"- name: unitrans-{config.encoder.replace('/', '-')}-{lang}-{variant}",
        "  results:",
        "  - task: {type: token-classification, name: Named-entity recognition}",
        f"    dataset: {{name: {lang}/test.txt, type: conll}}",
        f"    metrics: [{{type: f1, value: {summary['f1']:.4f}, name: entity micro F1 (conlleval)}}]",
        "---",
        "",
    ]
    titles = {
        row: row_title(row, name, r, config.rounds) for row, name, r in report_rows(VARIANTS, config.rounds)
    }
    rows = [
        f"| {titles.get(name, name)}{' (this model)' if name == variant else ''} | {_f1_text(r)} |"
        for name, r in results.items()
    ]
    use = ["## Use", "", "```", f"unitrans tag --model {shlex.quote(str(folder))} text.txt", "```"]
    if pipeline_ready:
        use += [
            "",
            "```python",
            "from transformers import pipeline",
            f'ner = pipeline("token-classification", model="{folder}", aggregation_strategy="first")',
            "```",
            "",
            "transformers' pipeline splits words its own way; `unitrans tag` splits them as in training and",
            "decodes valid IOB2 spans with Viterbi, so their outputs can differ.",
        ]
    data = config.data_dir
    body = [
        f"# {titles[variant]}: named entities in `{lang}`, without {lang} labels",
        "",
        f"Made by unitrans {__version__} with the UniTrans method (Wu et al., IJCAI 2020): labelled",
        f"`{config.source}` data, unlabelled `{lang}` text, no `{lang}` label in training or in any choice",
        "of settings.",
        *(
            [
                "",
                f"**Dictionary-assisted, not zero-resource**: the bilingual dictionary `{config.dictionary}`",
                "seeded the word-translation map and gave the translations of the words it covers. Compare",
                "these scores with neither zero-resource models nor the paper's figures.",
            ]
            if assisted
            else []
        ),
        "",
        f"- Encoder: `{config.encoder}`; entity types: {', '.join(types) or 'none'}; IOB2 tags: `{LABELS}`.",
        f"- Labelled data: `{data / config.source / 'train.txt'}`"
        + (f", a fixed sample of {n_source} sentences." if n_source else "."),
        f"- Unlabelled text: the words of `{data / lang / 'train.txt'}` (its tags unread)"
        + (f", a fixed sample of {n_target} sentences" if n_target else "")
        + "; the translated training data is made from it word by word"
        + (
            f" (its lexicon's target word vectors from {config.translate_sentences} of its sentences)."
            if config.translate_sentences
            else "."
        ),
        *(
            [
                f"- The student started from the weights of its `{config.student_init}` teacher (beyond "
                "the paper, whose student starts from the pretrained encoder).",
                *(
                    [
                        f"- Its final weights blend the distilled ones and that teacher's: (1 − {merge:g})"
                        f"·student + {merge:g}·teacher (WiSE-FT; beyond the paper)."
                    ]
                    if merge > 0
                    else []
                ),
            ]
            if VARIANTS[variant].is_student and config.student_init != "pretrained"
            else []
        ),
        *(
            [
                "- Its soft loss was KL(teacher ‖ student) per word (beyond the paper, whose Eq. 12 is an "
                "MSE between probabilities)."
            ]
            if VARIANTS[variant].soft_teacher is not None and config.soft_loss != "mse"
            else []
        ),
        *(
            [
                "- Θteach (Θsrc fine-tuned on the translated data) saw the labelled source data again beside "
                "the translated data, shuffled together (rehearsal; beyond the paper, whose Θteach sees the "
                "translated data alone)."
            ]
            if "teach" in VARIANTS[variant].models() and config.teach_data == "trans+source"
            else []
        ),
        *(
            [
                f"- The student learned in batches of {config.student_batch_size} sentences, the teachers in "
                f"batches of {config.batch_size}."
            ]
            if VARIANTS[variant].is_student and config.student_batch_size not in (0, config.batch_size)
            else []
        ),
        f"- This folder holds the seed-{seed} model. The command that made it:",
        "",
        "```",
        command_line(config),
        "```",
        "",
        f"## Test F1 on `{data / lang / 'test.txt'}` (entity micro F1, conlleval)",
        "",
        "| variant | F1 |",
        "|---|---|",
        *rows,
        "",
        *use,
        "",
        "## Limitations",
        "",
        f"- {setting}: no `{lang}` label was seen, so the model inherits the source data's entity",
        "  types, domain (news, for CoNLL) and annotation style; expect lower scores on other text.",
        "- The test set is only scored after training; no setting or model choice reads it.",
        f"- Words split on spaces and punctuation; long sentences go in {config.max_length}-subword windows.",
        "",
        "## Licences",
        "",
        "- unitrans code: Apache-2.0.",
        f"- The weights derive from the encoder `{config.encoder}` (its licence and terms apply) and",
        "  from the labelled training data (the CoNLL sets are for research use only): check both.",
        "",
    ]
    return "\n".join(front + body)


def _same_export(folder: Path, record: Mapping[str, Any]) -> bool:
    """Whether `folder` already holds this export: same source, card and labels, every file present."""
    try:
        found = json.loads((folder / EXPORT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(found, dict) or not isinstance(found.get("files"), list):
        return False
    same = {k: v for k, v in found.items() if k != "files"} == record
    return same and all((folder / str(name)).is_file() for name in found["files"])


def export_model(model_dir: Path, folder: Path, card: str, labels: Sequence[str], source_key: str) -> Path:
    """Copy `model_dir` to `folder` with the card and label list; replaces an older export in one rename.

    A compact cached model (`unitrans.model.compact`) is materialized instead: rebuilt from its base
    encoder and saved complete (full weights, tokenizer, unitrans.json), so the export needs no base."""
    from unitrans.model.compact import compact_info
    from unitrans.model.tagger import is_checkpoint, load_tagger, read_metadata, save_tagger

    model_dir, folder = Path(model_dir), Path(folder)
    record: dict[str, Any] = {"source": source_key, "card": card, "labels": list(labels)}
    if _same_export(folder, record):
        return folder
    meta = read_metadata(model_dir) if is_checkpoint(model_dir) else {}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".exporting-{folder.name}-"))
    try:
        if compact_info(meta) is not None:
            model, tokenizer = load_tagger(model_dir)
            save_tagger(model, tokenizer, staging, meta)  # without `base`: complete, no "compact" entry
        else:
            for item in model_dir.iterdir():  # copyfile, not copy2: new files get the umask's mode
                if item.is_file() and not item.name.startswith("."):
                    shutil.copyfile(item, staging / item.name)
        write_text_atomic(staging / CARD, card)
        write_text_atomic(staging / LABELS, "".join(f"{lab}\n" for lab in labels))
        record["files"] = sorted(p.name for p in staging.iterdir() if p.is_file())
        write_text_atomic(staging / EXPORT_RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        apply_umask_modes(staging)  # mkdtemp makes 0700
        old = None
        if folder.exists():
            old = folder.parent / f".replaced-{folder.name}-{os.getpid()}"
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def export_run(
    config: PipelineConfig,
    runs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, Path]]:
    """Export the chosen variants of every target language; returns {lang: {variant: folder}}."""
    chosen = default_export(config)  # PipelineConfig checked that they are among the variants run
    out: dict[str, dict[str, Path]] = {}
    for lang in config.targets:
        for i, variant in enumerate(chosen):
            first = runs[lang][variant][0]
            model_dir = Path(first["model"])
            labels = model_labels(model_dir)
            heads = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("architectures")
            pipeline_ready = any(str(a).endswith("ForTokenClassification") for a in heads or [])
            folder = export_folder(config.out_dir, lang, variant, primary=i == 0)
            card = model_card(
                config, lang, variant, first["seed"], labels, results[lang],
                folder=folder, pipeline_ready=pipeline_ready,
            )  # fmt: skip
            out.setdefault(lang, {})[variant] = export_model(
                model_dir, folder, card, labels, model_dir.parent.name
            )
    return out
