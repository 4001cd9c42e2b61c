"""The ablation table of the diseasemask bundle next to Kim et al.'s numbers (their localization table,
Table 1/2, and AUC table, Table 4).

    python bundles/diseasemask/scripts/ablation_table.py            # run what is missing, then the table
    python bundles/diseasemask/scripts/ablation_table.py --table-only

Rows: ResNet (baseline), +Align, +Align+DM, +PDM from the main run's evaluation
(``eval/metrics.json``: train and evaluate first); class-wise vs max-over-classes attention and soft
vs binary masks (``configs/ablations/{max_attention,binary_masks}.yaml``: stages 4-5 retrained on
the main run's stages 1-3, copied into the ablation's ckpt_dir; +Align+DM evaluated); min-max vs
positive CAM normalisation (``configs/ablations/minmax_cam.yaml``: evaluation only). Writes
``eval/ablation_table.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "bundles" / "diseasemask"
CONFIGS = "bundles/diseasemask/configs"
BOX_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax")
#: Kim et al. Table 1 (IoU 0.3 per class, then mean at 0.3 / 0.5 / 0.7) and Table 4 (mean AUC, 8 box classes)
PAPER = {
    "baseline": ([0.30, 0.82, 0.32, 0.21, 0.35, 0.10, 0.19, 0.20], (0.31, 0.17, 0.06), 0.79),
    "align": ([0.37, 0.80, 0.37, 0.41, 0.40, 0.11, 0.25, 0.22], (0.37, 0.21, 0.10), 0.80),
    "align_dm": ([0.40, 0.97, 0.40, 0.58, 0.50, 0.14, 0.40, 0.38], (0.47, 0.27, 0.13), 0.82),
    "pdm": ([0.34, 0.90, 0.44, 0.45, 0.43, 0.12, 0.31, 0.45], (0.43, 0.24, 0.11), None),
}
LABELS = {"baseline": "ResNet (baseline)", "align": "+Align", "align_dm": "+Align+DM", "pdm": "+PDM"}
logger = logging.getLogger("ablation_table")


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "monai.bundle", "run", *args]
    logger.info("%s", " ".join(cmd))
    subprocess.run(cmd, cwd=REPO, env=env, check=True)


def _files(*names: str) -> str:
    return str([f"{CONFIGS}/{n}" for n in names])


def run_ablation(name: str) -> Path:
    """Stages 4-5 with ``ablations/<name>.yaml`` on the main run's stages 1-3; returns its metrics file."""
    ckpt = BUNDLE / "models" / "ablations" / name
    (ckpt / "stages").mkdir(parents=True, exist_ok=True)
    for stage in ("anchor.pt", "alignment.pt", "align.pt"):
        shutil.copyfile(BUNDLE / "models" / "stages" / stage, ckpt / "stages" / stage)
    reuse = ["--stages#alignment", "false", "--stages#aligned", "false", "--use_alignment", "true", "--stages#pdm", "false", "--epochs#baseline", "1"]
    _run(["training", "--config_file", _files("train.yaml", f"ablations/{name}.yaml"), *reuse])
    models = json.dumps({"align_dm": str(ckpt / "stages" / "align_dm.pt")})
    _run(["evaluating", "--config_file", _files("train.yaml", "evaluate.yaml", f"ablations/{name}.yaml"), "--eval#models", models])
    return BUNDLE / "eval" / "ablations" / name / "metrics.json"


def _row(label: str, result: dict, paper: tuple | None) -> list[str]:
    per_class = [f"{result['loc_acc'][c]['0.3']:.2f}" for c in BOX_CLASSES]
    ours = f"{result['loc_acc_iou03']:.3f} / {result['loc_acc_iou05']:.3f} / {result['loc_acc_iou07']:.3f}"
    box_auc = result.get("mean_auc_box_classes", float("nan"))
    cells = [label, *per_class, ours, f"{result['mean_auc']:.3f}", f"{box_auc:.3f}"]
    if paper is not None:
        cells.append(f"{paper[1][0]:.2f} / {paper[1][1]:.2f} / {paper[1][2]:.2f}" + (f"; AUC {paper[2]:.2f}" if paper[2] else ""))
    else:
        cells.append("-")
    return cells


def table(rows: list[list[str]]) -> str:
    header = ["model", "Ate", "Car", "Eff", "Inf", "Mas", "Nod", "Pna", "Ptx", "loc@0.3 / 0.5 / 0.7", "mean AUC (14)", "mean AUC (8 box)", "paper loc@0.3 / 0.5 / 0.7"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table-only", action="store_true", help="only assemble the table from existing metrics files")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main_metrics = BUNDLE / "eval" / "metrics.json"
    if not main_metrics.is_file():
        raise SystemExit(f"{main_metrics} missing: run training and evaluation first (docs/README.md)")
    files = {"max_attention": BUNDLE / "eval" / "ablations" / "max_attention" / "metrics.json",
             "binary_masks": BUNDLE / "eval" / "ablations" / "binary_masks" / "metrics.json",
             "minmax_cam": BUNDLE / "eval" / "ablations" / "minmax_cam" / "metrics.json"}  # fmt: skip
    if not args.table_only:
        for name in ("max_attention", "binary_masks"):
            if not files[name].is_file():
                run_ablation(name)
        if not files["minmax_cam"].is_file():
            _run(["evaluating", "--config_file", _files("train.yaml", "evaluate.yaml", "ablations/minmax_cam.yaml")])
    main_result = json.loads(main_metrics.read_text())
    rows = [_row(LABELS[k], v, PAPER.get(k)) for k, v in main_result["models"].items()]
    for name, label in (("max_attention", "+Align+DM, max-over-classes attention"), ("binary_masks", "+Align+DM, binary masks")):
        if files[name].is_file():
            rows.append(_row(label, json.loads(files[name].read_text())["models"]["align_dm"], None))
    if files["minmax_cam"].is_file():
        for k, v in json.loads(files["minmax_cam"].read_text())["models"].items():
            rows.append(_row(f"{LABELS[k]}, min-max CAM", v, None))
    text = table(rows)
    out = BUNDLE / "eval" / "ablation_table.md"
    out.write_text(text + "\n")
    logger.info("written to %s\n%s", out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
