"""The registered model's description: a model card, written by `register` from what the
registry and the prepared data know. Plain text in, Markdown out; no tracking calls."""

from __future__ import annotations

from typing import Any

from poster_ml import DECISION_THRESHOLD

REQUEST_FORMATS = {
    "dataframe_split": '{"dataframe_split": {"columns": ["image"], "data": [["$IMAGE"]]}}',
    "dataframe_records": '{"dataframe_records": [{"image": "$IMAGE"}]}',
    "inputs": '{"inputs": {"image": ["$IMAGE"]}}',
    "instances": '{"instances": [{"image": "$IMAGE"}]}',
}


def input_section(name: str) -> list[str]:
    """How to call the served model: every request format, and explanations on request."""
    return [
        "## Input",
        "A column `image` of encoded poster files (JPEG, PNG or WebP, any size), base64 text in JSON; "
        "one poster or a batch. Serve it with `poster-ml serve --model models:/"
        + name
        + "@champion`, then, with `IMAGE=$(base64 -w0 poster.jpg)`:",
        "",
        *(
            f"- {kind}: `curl -s localhost:5001/invocations -H 'Content-Type: application/json' -d '{body}'`"
            for kind, body in REQUEST_FORMATS.items()
        ),
        "",
        'Add `"params": {"explain": true}` to any of them for each poster\'s LayerCAM heatmap '
        "(`heatmap_png`, base64) and the map's share on each cell of a 6 x 6 grid (`cell_shares`); "
        '`"threshold"` moves the label\'s cut.',
        "",
        "How to read an explained answer: `regions` lists what the detectors found on the poster, "
        "each with its `kind` (`title`, the largest text block, outlined cyan on the heatmap; other "
        "`text`, blue; `face`, green), its `box` (left, top, right, bottom as shares of the poster's "
        "width and height) and `map_share`, the share of the map's mass inside it: a title with a "
        "large share is what the model looked at. `design` gives the poster's attributes: title "
        "height and area, text and face area (shares of the poster), the number of faces, "
        "brightness and saturation (0 to 1) and colourfulness; `annotation` says `ok`, or why the "
        "detectors gave no answer. The evaluate run's report sets these attributes against the "
        "label and a model of them alone beside this one.",
    ]


def model_card(
    name: str, champion: dict[str, Any] | None, latest: dict[str, Any], dataset: dict[str, Any]
) -> str:
    """Markdown for the registered model `name`: what it predicts, how to call it, the data,
    the champion's figures with intervals, and its known limits. `champion` and `latest`
    are version facts (version, tags, verdict); `dataset` is the prepared data's info."""
    counts = dataset.get("counts", {})
    sizes = (
        ", ".join(f"{split} {sum(classes.values())}" for split, classes in counts.items())
        if isinstance(counts, dict)
        else ""
    )
    lines = [
        f"# {name}: fresh or rotten from a movie poster",
        "",
        "Predicts from a poster image the probability that the film is **fresh** on Rotten Tomatoes "
        f"(label `fresh` at probability {DECISION_THRESHOLD:g} or more, else `rotten`).",
        "",
        *input_section(name),
        "",
        "## Data",
        f"Prepared dataset `{dataset.get('digest', '')[:12]}` ({dataset.get('source', 'unknown')} posters at {dataset.get('size')} px; {sizes}).",
    ]
    lines += ["", "## Champion"]
    if champion is None:
        lines.append(
            f"No version is @champion yet. Latest: version {latest['version']}: {latest['verdict']}"
        )
    else:
        tags = champion["tags"]
        lines.append(
            f"Version {champion['version']} ({tags.get('variant')}): validation AUC {tags.get('val_auc')} (chosen on validation); "
            f"test AUC {tags.get('test_auc')} (95 % interval {tags.get('test_auc_low', '?')} to {tags.get('test_auc_high', '?')}) "
            f"on {tags.get('test_posters')} test posters. {champion['verdict']}"
        )
    lines += ["", "## Known limits"] + [
        f"- {limit}" for limit in known_limits(champion or latest, dataset)
    ]
    return "\n".join(lines)


def limits_in_brief(limits: list[str]) -> str:
    """The known limits in one line, each by its first clause (the served page shows it)."""
    return "; ".join(limit.split(":")[0] for limit in limits)


def known_limits(version: dict[str, Any], dataset: dict[str, Any]) -> list[str]:
    tags = version["tags"]
    limits = []
    if dataset.get("source") == "synthetic":
        limits.append(
            "trained on synthetic posters with a planted signal, not on real posters: its figures say nothing about real films"
        )
    if tags.get("pretrained") == "false":
        limits.append(
            "no ImageNet weights: a pretrained architecture here started from random weights (ImageNet could not be fetched), or the variant has no pretrained base"
        )
    if tags.get("device") != "GPU":
        limits.append(
            f"trained on a {tags.get('device') or 'CPU'}, with the quick settings a laptop allows"
        )
    limits.append(
        "a poster says little about a film: treat the probability as a weak signal, and read the class activation maps of the evaluate run"
    )
    return limits
