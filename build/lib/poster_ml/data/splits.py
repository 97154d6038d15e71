"""Seeded, stratified splitting that keeps every duplicate group inside one split."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SPLITS = ("train", "validation", "test")


def grouped_stratified_split(
    labels: list[int], groups: list[int], fractions: tuple[float, float, float], seed: int
) -> list[str]:
    """Assigns each poster a split name.

    Groups are dealt out per class (a group's class is its majority label) in a seeded
    random order, each to the split furthest below its target count, so the proportions
    hold within a group's size in every class.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    by_class: dict[int, list[int]] = defaultdict(list)
    for group in sorted(members):
        majority = round(float(np.mean([labels[i] for i in members[group]])) + 1e-9)
        by_class[majority].append(group)

    rng = np.random.default_rng(seed)
    assignment = [""] * len(labels)
    for label in sorted(by_class):
        class_groups = by_class[label]
        total = sum(len(members[g]) for g in class_groups)
        targets = np.array(fractions) * total
        filled = np.zeros(len(SPLITS))
        for position in rng.permutation(len(class_groups)):
            group = class_groups[position]
            split = int(np.argmax(targets - filled))
            filled[split] += len(members[group])
            for index in members[group]:
                assignment[index] = SPLITS[split]
    return assignment
