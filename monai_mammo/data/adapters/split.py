"""Patient-wise training / validation / test split, deterministic from a seed.

All images of one patient land in one split, so no patient's anatomy leaks from training into
evaluation. When a dataset has an official train/test split (CBIS-DDSM, ChestX-ray14, VinDr-Mammo)
it is honoured: the official test set stays the test set, and the validation set is carved
patient-wise out of the official training set (``test_fraction`` is then unused). A patient whose
images the official split puts on both sides goes wholly to the test set, and that is reported as
a note, because leaking them into training would be worse than enlarging the test set.

Example::

    records = [{"image": f"{i}.dcm", "patient_id": f"p{i // 2}"} for i in range(20)]
    splits, info = split_by_patient(records, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert sum(len(v) for v in splits.values()) == 20
"""

from __future__ import annotations

import collections
import math
import random
from typing import Any, Callable, Sequence

from monai_mammo.data.adapters.datalist import AdapterReport

SPLITS = ("training", "validation", "test")


def _check_fractions(val_fraction: float, test_fraction: float, official: bool) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if not official and val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 so that training is not empty, got "
            f"{val_fraction} + {test_fraction}"
        )


def _allocate(fraction: float, sizes: dict[int, int], capacity: dict[int, int],
              tie_order: dict[int, float]) -> dict[int, int]:
    """Patients per stratum for one split.

    ``round(fraction * all patients)`` in total (half up), shared out over the strata by largest
    remainder (Hamilton) of ``fraction * stratum size``, so a small stratum still gets its share;
    ``capacity`` is what earlier splits left in each stratum, ties go by the seeded ``tie_order``.
    """
    target = min(int(math.floor(fraction * sum(sizes.values()) + 0.5)), sum(capacity.values()))
    exact = {key: fraction * size for key, size in sizes.items()}
    counts = {key: min(int(math.floor(value)), capacity[key]) for key, value in exact.items()}
    order = sorted(sizes, key=lambda key: (-(exact[key] - math.floor(exact[key])), tie_order[key]))
    while sum(counts.values()) < target:
        for key in order:
            if sum(counts.values()) < target and counts[key] < capacity[key]:
                counts[key] += 1
    return counts


def split_by_patient(
    records: Sequence[dict[str, Any]],
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    official: Sequence[str | None] | None = None,
    stratum: Callable[[dict[str, Any]], int] | None = None,
    report: AdapterReport | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Split records into ``training`` / ``validation`` / ``test`` by ``record["patient_id"]``.

    Args:
        records: datalist records; each must have a non-empty ``"patient_id"``.
        val_fraction: fraction of patients for validation (of all patients, or of the official
            training patients when ``official`` is given). Default 0.1.
        test_fraction: fraction of patients for test; unused with ``official``. Default 0.2.
        seed: seed of the shuffle; the same records and seed always give the same split. Default 0.
        official: optional per-record official split, ``"training"`` or ``"test"`` (None: unknown,
            treated as training). Default None (no official split).
        stratum: optional ``record -> int``; a patient's stratum is the largest over its records and
            each stratum is split with the same fractions, so rare classes (e.g. malignant) appear
            in every split. Default None (one stratum).
        report: where notes about patients on both sides of the official split go.

    Returns:
        ``(splits, info)``: the three lists, each in input order, and a dict describing the split.
    """
    _check_fractions(val_fraction, test_fraction, official is not None)
    if official is not None and len(official) != len(records):
        raise ValueError(f"official has {len(official)} entries for {len(records)} records")
    by_patient: dict[str, list[int]] = collections.defaultdict(list)
    for index, record in enumerate(records):
        patient = str(record.get("patient_id", "")).strip()
        if not patient:
            raise ValueError(f"record {index} ({record.get('image')!r}) has no patient_id")
        by_patient[patient].append(index)

    # patient -> forced split (official test), the rest are shuffled below
    forced: dict[str, str] = {}
    if official is not None:
        for patient, indices in by_patient.items():
            sides = {official[i] or "training" for i in indices}
            unknown = sides - {"training", "test"}
            if unknown:
                raise ValueError(f"official split values must be 'training' or 'test', got {sorted(unknown)}")
            if "test" in sides:
                forced[patient] = "test"
                if len(sides) > 1 and report is not None:
                    moved = sum(1 for i in indices if (official[i] or "training") == "training")
                    report.add("official split", f"patient {patient}",
                               f"patient is in both official training and test; {moved} training image(s) moved to test",
                               "note")

    def patient_stratum(patient: str) -> int:
        return max(stratum(records[i]) for i in by_patient[patient]) if stratum is not None else 0

    rng = random.Random(seed)
    assignment: dict[str, str] = dict(forced)
    free = sorted(p for p in by_patient if p not in forced)
    strata: dict[int, list[str]] = collections.defaultdict(list)
    for patient in free:
        strata[patient_stratum(patient)].append(patient)
    keys = sorted(strata)
    for key in keys:
        rng.shuffle(strata[key])
    tie_order = {key: rng.random() for key in keys}
    sizes = {key: len(strata[key]) for key in keys}
    capacity = dict(sizes)
    quotas = {}
    for name, fraction in (("test", 0.0 if official is not None else test_fraction), ("validation", val_fraction)):
        quotas[name] = _allocate(fraction, sizes, capacity, tie_order)
        capacity = {key: capacity[key] - quotas[name][key] for key in keys}
    for key in keys:
        n_test, n_val = quotas["test"][key], quotas["validation"][key]
        for position, patient in enumerate(strata[key]):
            if position < n_test:
                assignment[patient] = "test"
            elif position < n_test + n_val:
                assignment[patient] = "validation"
            else:
                assignment[patient] = "training"

    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for index, record in enumerate(records):
        splits[assignment[str(record["patient_id"]).strip()]].append(record)
    info = {
        "method": "official train/test, validation by patient" if official is not None else "by patient",
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": None if official is not None else test_fraction,
        "stratified": stratum is not None,
        "patients": {name: sum(1 for p in assignment.values() if p == name) for name in SPLITS},
        "images": {name: len(items) for name, items in splits.items()},
    }
    return splits, info
