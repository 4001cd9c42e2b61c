"""LatentCADx ablation table on held-out phantom patches, next to the paper's numbers.

    python benchmarks/latentcadx_ablation.py [--train] [--only literal_weights no_oob] [--n-bootstrap 200]

Each row is ``bundles/latentcadx/configs/ablations/<name>.yaml`` merged on train.yaml (its models in
``models/ablations/<name>`` or ``models/ceiling``), evaluated with evaluate.yaml on the seed-1 phantoms
(``eval_phantom#seed`` 1); the default row and the U-Net / FCN rows come from the default run
(``models/model.pt``, ``models/stages/``), the floors from the same evaluation. ``--train`` trains
the ablations whose model is missing (one at a time, the bundle's literal command plus the file).
Writes ``bundles/latentcadx/eval/ablations/table.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "latentcadx"
ABLATIONS = ["ceiling_true_masks", "literal_weights", "no_pretraining", "no_oob", "no_inb"]
MODEL_DIRS = {"ceiling_true_masks": "models/ceiling", **{a: f"models/ablations/{a}" for a in ABLATIONS if a != "ceiling_true_masks"}}
#: An et al., Front. Big Data 2021 (Tables 1-4, Sec. 5): what the paper reports for the row (CBIS-DDSM)
PAPER = {
    "latentcadx": "ROC AUC 0.97, AP 0.87, seg AP@0.5 0.75, IoP 0.90, IoA 0.28 (its weights: the literal 2 / 1 / 0.5)",
    "literal_weights": "= the paper's LatentCADx row (it trained with alpha 2, beta 1, gamma 0.5)",
    "no_pretraining": "AP 0.81 (same architecture from scratch, LatentCADx-alpha)",
    "no_oob": "not reported", "no_inb": "not reported",
    "unet": "seg AP@0.5 0.62, IoP 0.66 (next best IoP)", "fcn": "IoA 0.44 (next lowest); 2.5x LatentCADx's confused pixels",
    "ceiling_true_masks": "not available (no exact masks in CBIS-DDSM)",
    "coarse_outline": "-", "intensity_rule": "-",
}
COLUMNS = ["roc_auc", "ap", "f1", "seg_ap_iou05", "iou", "iop", "ioa", "confused_pixels", "true_dice", "empty_prediction_fraction"]


def run(args: list[str]) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])


def files(*names: str) -> str:
    return str([f"bundles/latentcadx/configs/{n}" for n in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--only", nargs="*", default=ABLATIONS)
    parser.add_argument("--n-bootstrap", type=int, default=200)
    args = parser.parse_args()
    out = BUNDLE / "eval" / "ablations"
    rows: dict[str, dict] = {}
    default_dir = out / "default"
    run(["evaluating", "--config_file", files("train.yaml", "evaluate.yaml"), "--output_dir", str(default_dir), "--n_bootstrap", str(args.n_bootstrap)])
    for name, entry in json.loads((default_dir / "metrics.json").read_text())["models"].items():
        rows[name] = entry["overall"]
    for name in args.only:
        model = BUNDLE / MODEL_DIRS[name] / "model.pt"
        if not model.is_file():
            if not args.train:
                print(f"# {name}: no model at {model} (run with --train)", file=sys.stderr)
                continue
            run(["training", "--config_file", files("train.yaml", f"ablations/{name}.yaml")])
        if name == "ceiling_true_masks" and "ceiling" in rows:
            rows[name] = rows.pop("ceiling")
            continue
        target = out / name
        run(["evaluating", "--config_file", files("train.yaml", f"ablations/{name}.yaml", "evaluate.yaml"), "--output_dir", str(target),
             "--n_bootstrap", str(args.n_bootstrap), "--eval#floors", "[]"])  # fmt: skip
        rows[name] = json.loads((target / "metrics.json").read_text())["models"]["latentcadx"]["overall"]
    order = ["coarse_outline", "intensity_rule", "latentcadx", *[a for a in ABLATIONS if a in rows and a != "ceiling_true_masks"], "unet", "fcn", "ceiling_true_masks"]
    lines = ["| row | " + " | ".join(COLUMNS) + " | paper (CBIS-DDSM) |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name in [r for r in order if r in rows]:
        values = []
        for c in COLUMNS:
            v, ci = rows[name].get(c), rows[name].get(f"{c}_ci")
            cell = "nan" if v is None or v != v else (f"{v:.1f}" if c == "confused_pixels" else f"{v:.3f}")
            if ci and ci[0] == ci[0] and c in ("roc_auc", "iop", "ioa", "true_dice"):
                cell += f" [{ci[0]:.2f}, {ci[1]:.2f}]" if c != "confused_pixels" else ""
            values.append(cell)
        lines.append(f"| {name} | " + " | ".join(values) + f" | {PAPER.get(name, '')} |")
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
