"""The evaluate run's report: one self-contained HTML page that says in sentences what was
found, with the figures embedded, so that MLflow's artifact viewer shows it as it is.

Everything here is text in and text out: the rows are the evaluate step's result rows
(one per variant, with their metrics), the images PNG bytes the tracking layer fetched.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from typing import Any

import pandas as pd

from poster_ml.evaluation.chance import verdict_of

METHOD_NAMES = {"layer_cam": "LayerCAM", "grad_cam": "Grad-CAM", "cam": "CAM"}
GROUP_NAMES = {"most_fresh": "most-fresh", "most_rotten": "most-rotten"}
# The best variant's grids the report shows, by artifact file name.
GRIDS = {
    "layer_cam_highest.png": "The posters it finds most fresh",
    "layer_cam_lowest.png": "The posters it finds most rotten",
    "layer_cam_mistakes.png": "Its most confident mistakes",
}
CANNOT_BE_MEASURED = (
    "The finding cannot be measured on these posters: they were prepared without detecting "
    "their text and faces (preprocess --annotate false), and no regions were planted in them. "
    "The class activation maps above show where the model looks; read them with that in mind."
)
NOT_MEASURED_WITHOUT_FAITHFULNESS = (
    "Where the maps lie on the detected text and faces was not measured: evaluate with "
    "--faithfulness-posters above 0. The design attributes below were."
)
# The finding's regions in words: planted on synthetic posters, detected on any.
REGION_WORDS = {
    "title": "the planted title",
    "people": "the planted people",
    "text": "the detected text",
    "faces": "the detected faces",
}
ATTRIBUTE_WORDS = {
    "title_height": "title height (share of the poster's height)",
    "title_area": "title area (share of the poster)",
    "text_area": "area covered by text",
    "faces": "number of faces",
    "face_area": "area covered by faces",
    "brightness": "brightness (0 to 1)",
    "saturation": "saturation (0 to 1)",
    "colourfulness": "colourfulness (Hasler-Suesstrunk)",
}


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """What the report is made of: the result rows (best on validation first), the ROC of
    all variants and the best variant's grids as PNG bytes, and the detail artifacts' paths."""

    title: str
    rows: list[dict[str, Any]]
    table: pd.DataFrame
    roc_png: bytes
    grids: dict[str, bytes]
    details: list[str]
    # The study's questions answered: (question, with, without, PairedComparison).
    answers: list = dataclasses.field(default_factory=list)


def percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def headline(row: dict[str, Any], candidates: int) -> str:
    """One sentence on the variant chosen on validation: its test AUC with its interval
    beside chance, and its accuracy beside always answering the majority class; a second
    one where it is no better than chance or collapsed (evaluation/chance.py)."""
    low, high = row["roc_auc_ci_low"], row["roc_auc_ci_high"]
    chosen = (
        f"Of {candidates} variants, {row['variant']} is best on validation (AUC {row['val_auc']:.3f})"
        if candidates > 1 and row.get("val_auc") is not None
        else f"{row['variant']} was evaluated"
    )
    verdict = (
        "better than chance"
        if low > 0.5
        else "worse than chance"
        if high < 0.5
        else "not distinguishable from chance"
    )
    judged = verdict_of(row).words()
    return (
        f"{chosen}; on {int(row['count'])} untouched test posters it scores AUC {row['roc_auc']:.3f} "
        f"(95 % interval {low:.3f} to {high:.3f}), {verdict} (0.5), and accuracy "
        f"{row['accuracy']:.3f} ({row['accuracy_ci_low']:.3f} to {row['accuracy_ci_high']:.3f}) "
        f"where always answering the training split's majority class scores {row['majority_baseline']:.3f}."
        + (f" It is {judged}." if judged else "")
    )


def answer_sentence(question: str, new: str, old: str, comparison) -> str:
    """'Does regularisation help? regularized_cnn against basic_cnn: ... yes / not shown / no'."""
    said = (
        "yes, beyond resampling noise"
        if comparison.low > 0
        else "no: it does worse"
        if comparison.high < 0
        else "not shown: the interval holds 0"
    )
    return f"{question} {new} against {old}: {comparison}; {said}."


def share(row: dict[str, Any], name: str) -> str:
    return (
        f"{percent(row[name])} ({percent(row[name + '_ci_low'])[:-2]}-"
        f"{percent(row[name + '_ci_high'])})"
    )


def finding_sentences(row: dict[str, Any], method: str = "layer_cam") -> list[str]:
    """The study's finding in sentences: per group of posters, the map's share of mass on
    the title and the people beside what position alone (the location prior) puts there;
    one sentence saying it cannot be measured where the posters' regions are not known."""
    group_size = int(row.get("faithfulness_posters", 0)) // 2
    sentences = []
    for group, words in GROUP_NAMES.items():
        for first, second in (("title", "people"), ("text", "faces")):
            name = f"finding_{group}_{method}"
            if f"{name}_{first}_share" not in row:
                continue
            prior = f"finding_{group}_prior"
            where = (
                f", where position alone would put {percent(row[f'{prior}_{first}_share'])} "
                f"and {percent(row[f'{prior}_{second}_share'])}"
                if f"{prior}_{first}_share" in row
                else ""
            )
            sentences.append(
                f"For its {group_size} {words} posters, {METHOD_NAMES[method]} puts "
                f"{share(row, f'{name}_{first}_share')} of its mass on {REGION_WORDS[first]} and "
                f"{share(row, f'{name}_{second}_share')} on {REGION_WORDS[second]}{where}."
            )
    if not sentences and "design_baseline_roc_auc" in row:
        return [NOT_MEASURED_WITHOUT_FAITHFULNESS]  # Annotated posters; no maps were scored.
    return sentences or [CANNOT_BE_MEASURED]


def design_sentences(row: dict[str, Any]) -> list[str]:
    """The design baseline beside the CNN, and the detectors' agreement with planted titles."""
    if "design_baseline_roc_auc" not in row:
        return []
    low, high = row["cnn_minus_design_auc_ci_low"], row["cnn_minus_design_auc_ci_high"]
    said = (
        "so the CNN sees more than these attributes"
        if low > 0
        else "so the attributes alone do better"
        if high < 0
        else "so the CNN is not shown to see more than these attributes"
    )
    sentences = [
        f"A logistic regression on the eight design attributes alone (title size, text, faces "
        f"and colour; chosen on validation) scores test AUC {row['design_baseline_roc_auc']:.3f} "
        f"(95 % interval {row['design_baseline_roc_auc_ci_low']:.3f} to "
        f"{row['design_baseline_roc_auc_ci_high']:.3f}) against {row['variant']}'s "
        f"{row['roc_auc']:.3f}: the CNN minus the attributes is {row['cnn_minus_design_auc']:+.3f} "
        f"(paired 95 % interval {low:+.3f} to {high:+.3f}), {said}."
    ]
    if "detected_title_recall" in row:
        sentences.append(
            f"On these synthetic posters the detected title is the planted one (IoU 0.5 or more) "
            f"for {share(row, 'detected_title_recall')} of {int(row['detector_posters'])} posters; "
            f"of the titles detected, {share(row, 'detected_title_precision')} are the planted one."
        )
    return sentences


def attribute_table(row: dict[str, Any]) -> pd.DataFrame | None:
    """Each attribute's fresh share above and at-or-below its training median, in words."""
    if "design_faces_fresh_share_above" not in row:
        return None

    def cell(name: str, side: str) -> str:
        key = f"design_{name}_fresh_share_{side}"
        if row[key] != row[key]:  # NaN: no poster on that side.
            return "no posters"
        return f"{share(row, key)} of {int(row[f'design_{name}_posters_{side}'])}"

    return pd.DataFrame(
        [
            {
                "attribute": words,
                "training median": f"{row[f'design_{name}_training_median']:.3g}",
                "fresh share above the median": cell(name, "above"),
                "fresh share at or below": cell(name, "below"),
            }
            for name, words in ATTRIBUTE_WORDS.items()
        ]
    )


def faithfulness_verdict(row: dict[str, Any], method: str = "layer_cam") -> str:
    """Whether deleting the poster in the map's order takes the prediction away faster than
    a random order and than the location prior, in words."""
    if f"{method}_deletion_minus_random" not in row:
        return "Faithfulness was not measured (evaluate with --faithfulness-posters above 0)."
    parts = []
    for baseline, words in (("random", "a random order"), ("prior", "the location prior")):
        name = f"{method}_deletion_minus_{baseline}"
        if name not in row:
            continue
        low, high = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
        judged = "beats" if high < 0 else "does worse than" if low > 0 else "does not beat"
        parts.append(
            f"{judged} {words} (deletion area {row[name]:+.3f}, 95 % interval {low:+.3f} to {high:+.3f})"
        )
    return (
        f"Deleting the poster cell by cell in {METHOD_NAMES[method]}'s order "
        + " and ".join(parts)
        + ": below zero, the map finds what the model uses faster."
    )


def design_section(row: dict[str, Any]) -> list[str]:
    """The design attributes against the label and the attribute-only baseline, as HTML."""
    table = attribute_table(row)
    if table is None:
        return []
    return [
        "<h3>What goes with fresh: the posters' design attributes on the test split</h3>",
        f'<div class="scroll">{table.to_html(index=False, border=0)}</div>',
        *(f"<p>{html.escape(sentence)}</p>" for sentence in design_sentences(row)),
    ]


def image_tag(png: bytes, alternative: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alternative)}">'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; }
p.headline { font-size: 1.25em; line-height: 1.4; background: #f3f6fa; padding: 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
div.scroll { overflow-x: auto; }
figure { margin: 1em 0; }
"""


def report_html(inputs: ReportInputs) -> str:
    """The whole page: headline, leaderboard, ROC, the best variant's grids, the finding,
    the faithfulness verdict, and where the details are."""
    best = inputs.rows[0]
    escape = html.escape
    grids = [
        f"<figure>{image_tag(png, caption)}<figcaption>{escape(caption)}</figcaption></figure>"
        for file_name, caption in GRIDS.items()
        if (png := inputs.grids.get(file_name))
    ]
    table = inputs.table.to_html(
        index=False, float_format=lambda value: f"{value:.3f}", na_rep="-", border=0
    )
    sections = [
        f"<h1>{escape(inputs.title)}</h1>",
        f'<p class="headline">{escape(headline(best, len(inputs.rows)))}</p>',
        "<h2>Leaderboard (ranked by validation AUC; the test columns only report)</h2>",
        f'<div class="scroll">{table}</div>',
        "<h2>ROC of every variant on the test split</h2>",
        image_tag(inputs.roc_png, "ROC curves of every variant"),
        *(
            ["<h2>The study's questions (paired, on the same test posters)</h2>"]
            + [f"<p>{escape(answer_sentence(*answer))}</p>" for answer in inputs.answers]
            if inputs.answers
            else []
        ),
        f"<h2>Where {escape(best['variant'])} looks (LayerCAM)</h2>",
        *(grids or ["<p>No class activation maps were drawn.</p>"]),
        "<h2>The finding</h2>",
        *(f"<p>{escape(sentence)}</p>" for sentence in finding_sentences(best)),
        *design_section(best),
        "<h2>Does the map show what the model uses?</h2>",
        f"<p>{escape(faithfulness_verdict(best))}</p>",
        "<h2>Details (artifacts of this run)</h2>",
        "<ul>"
        + "".join(f"<li><code>{escape(path)}</code></li>" for path in inputs.details)
        + "</ul>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(inputs.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
