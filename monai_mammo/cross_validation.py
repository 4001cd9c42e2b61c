"""k-fold patient-wise stratified cross-validation of a bundle, with one command.

Bakalo et al. (Neurocomputing 2021) report their Cls-Det-RS results as means ± sd over a 5-fold
patient-wise cross-validation. :func:`run_cross_validation` does that with a bundle's own configs
(``monai.bundle.ConfigWorkflow``, no copy of them):

1. the bundle's datalist (``datalist_file`` of its ``train.yaml``: a ``dataset_dir`` /
   ``datalist``, or the phantom set it generates) is read, every list of it pooled;
2. :func:`patient_folds` puts each **patient** in one of ``n_folds`` folds, **stratified** by the
   image class N / B / M (label ``[y_M, y_B]``) and, where the records have them, by ``density``
   and ``lesion_type``;
3. for fold ``f``: ``<output_dir>/fold<f>/datalist.json`` holds ``test`` = fold ``f`` and
   ``training`` / ``validation`` = the other folds, the validation patients carved out of them
   patient-wise and stratified (:func:`monai_mammo.data.adapters.split.split_by_patient`,
   ``val_fraction``); the bundle's ``train.yaml`` runs ``training`` on it and ``train.yaml`` +
   ``evaluate.yaml`` run ``evaluating`` on its test list (checkpoint, logs and ``metrics.json``
   under ``fold<f>/``);
4. ``<output_dir>/cv_metrics.json``: for every numeric key of the folds' ``metrics.json`` (lists
   element-wise) the ``mean`` and the sample ``sd`` (ddof 1) over the folds where it is defined,
   ``n_defined`` and the per-fold values (:func:`summarize_folds`); ``folds.json`` holds the fold
   of each patient.

Command (``monai-mammo cross-validate`` or ``python -m monai_mammo.cross_validation``; ``--extra``
config files, e.g. ``smoke.yaml``, are merged last, as on the bundle's CLI)::

    monai-mammo cross-validate --bundle clsdet --n_folds 5 --output_dir cv
    monai-mammo cross-validate --bundle clsdet --n_folds 2 --output_dir cv \\
        --extra bundles/clsdet/configs/smoke.yaml -O eval#n_bootstrap=20
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_mammo.atomic_io import atomic_write_json

__all__ = ["image_class", "patient_folds", "fold_datalist", "summarize_folds", "run_cross_validation", "configure_parser", "run", "main"]

logger = logging.getLogger(__name__)

CLASSES = ("N", "B", "M")


def image_class(record: Mapping[str, Any]) -> str:
    """N, B or M of a datalist record: its ``label`` ``[y_M, y_B]`` (malignant wins); a scalar
    label 0 / 1 / 2 is read as N / B / M.

    >>> [image_class({"label": v}) for v in ([0, 0], [0, 1], [1, 1], 2)]
    ['N', 'B', 'M', 'M']
    """
    label = record.get("label")
    if isinstance(label, (list, tuple)) and len(label) >= 2:
        return "M" if int(label[0]) else ("B" if int(label[1]) else "N")
    if label is None:
        return "N"
    return CLASSES[int(label)] if str(label).isdigit() and int(label) < 3 else str(label)


def _patient(record: Mapping[str, Any]) -> str:
    patient = str(record.get("patient_id") or "").strip()
    return patient or str(record.get("image"))  # no patient id: each image its own patient


def _attribute(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == [] or value == "":
        return None
    return ",".join(sorted(map(str, value))) if isinstance(value, (list, tuple)) else str(value)


def patient_folds(
    records: Sequence[Mapping[str, Any]], n_folds: int = 5, seed: int = 0, strata_keys: Sequence[str] = ("density", "lesion_type")
) -> list[int]:
    """The fold (0 .. ``n_folds`` - 1) of each record: all images of a patient (``patient_id``; no
    id: the image alone) in one fold; the folds balanced per image class N / B / M, then per value
    of each ``strata_keys`` field present, then in size.

    Patients are placed one by one, those with the most images first (ties in a seeded random
    order), each into the fold that holds the fewest images of its classes so far (then the
    fewest of its ``strata_keys`` values, then the fewest images, then the lowest index). The
    same records and seed give the same folds.

    >>> records = [{"image": f"{i}.png", "patient_id": f"p{i // 2}", "label": [i % 3 == 0, 0]} for i in range(12)]
    >>> folds = patient_folds(records, n_folds=3)
    >>> all(folds[i] == folds[i + 1] for i in range(0, 12, 2)), sorted(collections.Counter(folds).values())
    (True, [4, 4, 4])
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    by_patient: dict[str, list[int]] = collections.defaultdict(list)
    for index, record in enumerate(records):
        by_patient[_patient(record)].append(index)
    if len(by_patient) < n_folds:
        raise ValueError(f"{len(by_patient)} patient(s) cannot fill {n_folds} folds")
    rng = random.Random(seed)
    patients = sorted(by_patient)
    rng.shuffle(patients)
    patients.sort(key=lambda p: -len(by_patient[p]))  # stable: the random order within a size
    class_count = [collections.Counter() for _ in range(n_folds)]
    strata_count = [collections.Counter() for _ in range(n_folds)]
    size = [0] * n_folds
    fold_of: dict[str, int] = {}
    for patient in patients:
        indices = by_patient[patient]
        classes = collections.Counter(image_class(records[i]) for i in indices)
        strata = collections.Counter(
            (key, value) for i in indices for key in strata_keys if (value := _attribute(records[i], key)) is not None
        )

        def cost(f: int) -> tuple[int, int, int, int]:
            return (
                sum(class_count[f][c] * n for c, n in classes.items()),
                sum(strata_count[f][s] * n for s, n in strata.items()),
                size[f],
                f,
            )

        best = min(range(n_folds), key=cost)
        fold_of[patient] = best
        class_count[best].update(classes)
        strata_count[best].update(strata)
        size[best] += len(indices)
    return [fold_of[_patient(record)] for record in records]


def fold_datalist(
    records: Sequence[Mapping[str, Any]], folds: Sequence[int], fold: int, val_fraction: float = 0.15, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """The datalist of fold ``fold``: ``test`` its records; ``training`` / ``validation`` the other
    folds', the validation patients (``val_fraction`` of them, at least one) carved out
    patient-wise, stratified by image class.

    >>> records = [{"image": f"{i}.png", "patient_id": f"p{i}", "label": [0, 0]} for i in range(6)]
    >>> d = fold_datalist(records, [0, 1, 2, 0, 1, 2], fold=2, val_fraction=0.25)
    >>> [r["image"] for r in d["test"]], len(d["training"]), len(d["validation"])
    (['2.png', '5.png'], 3, 1)
    """
    from monai_mammo.data.adapters.split import split_by_patient

    test = [dict(r) for r, f in zip(records, folds) if f == fold]
    rest = [{**r, "patient_id": _patient(r)} for r, f in zip(records, folds) if f != fold]
    n_patients = len({r["patient_id"] for r in rest})
    fraction = max(float(val_fraction), 1.0 / max(n_patients, 1) + 1e-9) if n_patients > 1 else 0.0
    splits, _ = split_by_patient(rest, val_fraction=min(fraction, 0.5), test_fraction=0.0, seed=seed, stratum=lambda r: CLASSES.index(image_class(r)) if image_class(r) in CLASSES else 0)
    return {"training": splits["training"], "validation": splits["validation"], "test": test}


def summarize_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"mean", "sd", "per_fold", "n_defined"}`` of every numeric key of the folds' metrics (lists
    of numbers element-wise; sd with ddof 1, 0 for one value). A fold where a metric is undefined
    (``null`` / NaN, e.g. an AUROC of a test fold with one class) is left out of that key's mean and
    sd, and ``n_defined`` counts the folds used; a key defined in no fold, or not numeric, is left out.

    >>> s = summarize_folds([{"auc": 0.8, "ci": [0.7, 0.9], "name": "x"}, {"auc": 0.6, "ci": [0.5, 0.7], "name": "x"}, {"auc": None, "ci": None}])
    >>> round(s["mean"]["auc"], 3), round(s["sd"]["auc"], 4), [round(v, 2) for v in s["mean"]["ci"]], "name" in s["mean"], s["n_defined"]["auc"]
    (0.7, 0.1414, [0.6, 0.8], False, 2)
    """

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    def mean_sd(values: Sequence[float]) -> tuple[float, float]:
        m = sum(values) / len(values)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        return m, sd

    mean: dict[str, Any] = {}
    sd: dict[str, Any] = {}
    per_fold: dict[str, Any] = {}
    n_defined: dict[str, int] = {}
    keys = list(dict.fromkeys(k for m in fold_metrics for k in m))
    for key in keys:
        values = [m.get(key) for m in fold_metrics]
        defined = [v for v in values if not missing(v)]
        if not defined:
            continue
        if all(number(v) for v in defined):
            mean[key], sd[key] = mean_sd([float(v) for v in defined])
        elif all(isinstance(v, list) and len(v) == len(defined[0]) > 0 and all(number(x) for x in v) for v in defined):
            pairs = [mean_sd([float(v[i]) for v in defined]) for i in range(len(defined[0]))]
            mean[key], sd[key] = [p[0] for p in pairs], [p[1] for p in pairs]
        else:
            continue
        per_fold[key] = values
        n_defined[key] = len(defined)
    return {"mean": mean, "sd": sd, "per_fold": per_fold, "n_defined": n_defined}


def _absolute_paths(record: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """The record with every string value that names a file under ``base`` made absolute."""
    out = dict(record)
    for key, value in record.items():
        if isinstance(value, str) and value and not os.path.isabs(value) and (base / value).exists():
            out[key] = str((base / value).resolve())
    return out


def _workflow(config_files: Sequence[str], run_id: str, meta_file: str | None, overrides: Mapping[str, Any]) -> None:
    """``run_id`` of the configs, as ``python -m monai.bundle run`` runs it; an override whose top
    id the configs lack (``eval#...`` for training) is left out."""
    from monai.bundle import ConfigParser, ConfigWorkflow

    parser = ConfigParser()
    parser.read_config(list(config_files))
    known = {k: v for k, v in overrides.items() if k.split("#")[0] in parser}
    workflow = ConfigWorkflow(
        config_file=list(config_files), meta_file=meta_file, logging_file=False, run_id=run_id, workflow_type=None, **known
    )
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()


def run_cross_validation(
    bundle: str | os.PathLike,
    output_dir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.15,
    extra_configs: Sequence[str | os.PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
    strata_keys: Sequence[str] = ("density", "lesion_type"),
    train_config: str = "train.yaml",
    evaluate_config: str = "evaluate.yaml",
    train_id: str = "training",
    evaluate_id: str = "evaluating",
) -> dict[str, Any]:
    """Run the k-fold cross-validation of the module docstring; returns ``cv_metrics.json``'s content.

    Args:
        bundle: a bundle name (e.g. "clsdet") or folder.
        output_dir: where ``fold<f>/`` (datalist.json, models/, runs/, eval/metrics.json),
            ``folds.json`` and ``cv_metrics.json`` go.
        n_folds: folds (paper: 5).
        seed: seed of the fold assignment and of the validation carve-out.
        val_fraction: share of the training folds' patients used for validation (model selection).
        extra_configs: config files merged after the bundle's (e.g. ``configs/smoke.yaml``).
        overrides: config values for both runs (e.g. ``{"eval#n_bootstrap": 200}``).
        strata_keys: record fields stratified on where present (after the image class).
        train_config, evaluate_config, train_id, evaluate_id: the bundle's file names and run ids.
    """
    from monai.bundle import ConfigParser

    from monai_mammo.bundle_predictor import resolve_bundle_root

    root = resolve_bundle_root(bundle)
    configs = root / "configs"
    extra = [str(Path(p).resolve()) for p in extra_configs]
    train_files = [str(configs / train_config), *extra]
    eval_files = [str(configs / train_config), str(configs / evaluate_config), *extra]
    meta_file = str(configs / "metadata.json") if (configs / "metadata.json").is_file() else None
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = {"bundle_root": str(root), **dict(overrides or {})}

    parser = ConfigParser()
    parser.read_config(train_files)
    parser.update({k: v for k, v in base.items() if k.split("#")[0] in parser})
    datalist_file = Path(parser.get_parsed_content("datalist_file"))
    content = json.loads(datalist_file.read_text())
    records = [
        _absolute_paths(r, datalist_file.parent)
        for name in ("training", "validation", "test")
        for r in content.get(name, [])
        if isinstance(r, Mapping)
    ]
    if not records:
        raise ValueError(f"{datalist_file}: no records in its training / validation / test lists")
    folds = patient_folds(records, n_folds=n_folds, seed=seed, strata_keys=strata_keys)
    assignment = {_patient(r): f for r, f in zip(records, folds)}
    atomic_write_json(out / "folds.json", {"datalist": str(datalist_file), "n_folds": n_folds, "seed": seed, "patients": assignment})
    logger.info("cross-validation: %d images, %d patients, %d folds from %s", len(records), len(assignment), n_folds, datalist_file)

    fold_metrics = []
    for fold in range(n_folds):
        fold_dir = out / f"fold{fold}"
        fold_dir.mkdir(exist_ok=True)
        datalist = fold_datalist(records, folds, fold, val_fraction=val_fraction, seed=seed)
        for key in ("label_order",):
            if key in content:
                datalist[key] = content[key]  # type: ignore[assignment]
        atomic_write_json(fold_dir / "datalist.json", datalist)
        run_overrides = {
            **base,
            "datalist": str(fold_dir / "datalist.json"),
            "dataset_dir": None,
            "ckpt_dir": str(fold_dir / "models"),
            "log_dir": str(fold_dir / "runs"),
            "output_dir": str(fold_dir / "eval"),
        }
        logger.info("cross-validation fold %d/%d: %d training, %d validation, %d test images", fold + 1, n_folds,
                    len(datalist["training"]), len(datalist["validation"]), len(datalist["test"]))  # fmt: skip
        _workflow(train_files, train_id, meta_file, run_overrides)
        _workflow(eval_files, evaluate_id, meta_file, run_overrides)
        metrics_file = fold_dir / "eval" / "metrics.json"
        fold_metrics.append(json.loads(metrics_file.read_text()))

    summary = summarize_folds(fold_metrics)
    result = {
        "bundle": str(root.name),
        "n_folds": n_folds,
        "seed": seed,
        "datalist": str(datalist_file),
        "fold_metrics": [str(out / f"fold{f}" / "eval" / "metrics.json") for f in range(n_folds)],
        **summary,
    }
    atomic_write_json(out / "cv_metrics.json", result)
    for key in sorted(summary["mean"]):
        value = summary["mean"][key]
        if isinstance(value, float):
            logger.info("cross-validation %s: %.4f ± %.4f", key, value, summary["sd"][key])
    logger.info("cross-validation: %s", out / "cv_metrics.json")
    return result


def configure_parser(ap: argparse.ArgumentParser) -> None:
    """The arguments of ``monai-mammo cross-validate`` (and ``python -m monai_mammo.cross_validation``)."""
    ap.add_argument("--bundle", required=True, help="bundle name (e.g. clsdet) or folder")
    ap.add_argument("--output_dir", required=True, type=Path, help="fold<f>/, folds.json and cv_metrics.json go here")
    ap.add_argument("--n_folds", type=int, default=5, help="folds (default 5, as Bakalo et al.)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    ap.add_argument("--val_fraction", type=float, default=0.15, help="validation share of the training folds' patients (default 0.15)")
    ap.add_argument("--extra", action="append", default=[], metavar="CONFIG", help="config file merged last, e.g. the bundle's smoke.yaml (repeatable)")
    ap.add_argument("-O", dest="overrides", action="append", default=[], metavar="KEY=JSON", help="config override for training and evaluation (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Run the cross-validation asked in ``args`` (see :func:`configure_parser`); 0 when done."""
    overrides = {}
    for entry in args.overrides:
        key, sep, value = entry.partition("=")
        if not sep:
            raise SystemExit(f"-O {entry!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_cross_validation(args.bundle, args.output_dir, n_folds=args.n_folds, seed=args.seed, val_fraction=args.val_fraction, extra_configs=args.extra, overrides=overrides)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_mammo.cross_validation --bundle NAME --output_dir DIR [--n_folds 5] ...``."""
    ap = argparse.ArgumentParser(prog="python -m monai_mammo.cross_validation", description=__doc__.split("\n\n")[0])
    configure_parser(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
