"""DAB-Net ablations on the phantom benchmark, written as the paper's Table 2 (plus obscured AUC).

Each row trains the dabnet bundle with one override file from bundles/dabnet/configs/ablations/
(DAB-Net itself: none), then evaluates it with configs/evaluate.yaml on all real ROIs of a phantom
set generated with a different seed (default 1) than the training set (default 0). AUCs carry
percentile bootstrap 95 % CIs; --seeds N trains every row N times and averages (the paper reports
the mean of 10 runs).

Usage (from the repository root)::

    python benchmarks/dabnet_ablation.py --output bundles/dabnet/eval/ablation
    python benchmarks/dabnet_ablation.py --rows erm dabnet --seeds 3 --set epochs=20
    python benchmarks/dabnet_ablation.py --smoke --rows simple --output /tmp/ablation   # quick check

Writes <output>/ablation.json and <output>/ablation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "dabnet"

#: row key -> (label as in Table 2, alpha blending column, disentangle column, override file, paper DDSM AUC)
ROWS = {
    "erm": ("ERM (ResNet-34)", "x", "x", "erm.yaml", 0.847),
    "ad": ("AD (composites added)", "AD", "x", "ad.yaml", 0.836),
    "simple": ("Simple blending", "Simple", "yes", "simple.yaml", 0.893),
    "no_mass_decoder": ("No mass decoder", "yes", "no mass decoder", "no_mass_decoder.yaml", 0.869),
    "no_glands_decoder": ("No glands decoder", "yes", "no glands decoder", "no_glands_decoder.yaml", 0.873),
    "one_branch": ("One branch (shared decoder, 2x channels)", "yes", "one branch", "one_branch.yaml", 0.889),
    "dabnet": ("DAB-Net", "yes", "yes", None, 0.913),
}
PAPER_OBSCURED = {"erm": 0.728, "dabnet": 0.924}


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_bundle(overrides: dict, config_files: list[str]) -> dict:
    """Run the bundle's training workflow in-process; return its checkpoint, best validation AUC and
    wall time."""
    from monai.bundle import ConfigWorkflow

    start = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=config_files,
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=str(BUNDLE / "configs" / "logging.conf"),
        workflow_type="train",
        run_id="run",
        **{"bundle_root": str(BUNDLE), **overrides},
    )
    workflow.initialize()
    workflow.run()
    best = workflow.parser.get_parsed_content("validate#evaluator").state.best_metric
    ckpt = str(Path(workflow.parser.get_parsed_content("ckpt_dir")) / "model.pt")
    workflow.finalize()
    return {"checkpoint": ckpt, "best_val_auc": float(best), "train_seconds": time.perf_counter() - start}


def run_row(
    key: str, seed: int, out_dir: Path, sets: dict, eval_seed: int, n_bootstrap: int, last_files: list[str] = ()
) -> dict:
    from monai.bundle import ConfigWorkflow

    files = [str(BUNDLE / "configs" / "train.yaml")]
    if ROWS[key][3]:
        files.append(str(BUNDLE / "configs" / "ablations" / ROWS[key][3]))
    run_dir = out_dir / f"{key}_seed{seed}"
    common = {**sets, "seed": seed, "ckpt_dir": str(run_dir), "output_dir": str(run_dir)}
    trained = train_bundle(common, config_files=files + list(last_files))
    evaluate = ConfigWorkflow(
        config_file=files + [str(BUNDLE / "configs" / "evaluate.yaml")] + list(last_files),
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        workflow_type="eval",
        run_id="evaluating",
        **common,
        **{"bundle_root": str(BUNDLE), "eval_phantom#seed": eval_seed, "eval#n_bootstrap": n_bootstrap},
    )
    evaluate.initialize()
    evaluate.run()
    evaluate.finalize()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"row": key, "seed": seed, "best_val_auc": trained["best_val_auc"], "train_seconds": trained["train_seconds"], "metrics": metrics}


def fmt(values: list[float], cis: list[tuple[float, float]]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} [{cis[0][0]:.3f}, {cis[0][1]:.3f}]"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f} (n={len(values)})"


def table(results: list[dict], meta: dict) -> str:
    lines = [
        f"DAB-Net ablations on phantom ROIs (train seed {meta['train_seed']}, test: all real ROIs of the "
        f"seed-{meta['eval_seed']} set; {meta['seeds']} training seed(s) per row; AUC [bootstrap 95% CI]).",
        "",
        "| Row | Alpha blending | Disentangle | AUC (phantom) | AUC obscured only (phantom) | AUC clear only | paper DDSM AUC | paper DDSM obscured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, (label, alpha, disentangle, _, paper) in ROWS.items():
        rows = [r for r in results if r["row"] == key]
        if not rows:
            continue
        cells = []
        for subset in ("overall", "obscured", "clear"):
            values = [r["metrics"][subset]["auc"] for r in rows]
            cis = [(r["metrics"][subset]["ci_low"], r["metrics"][subset]["ci_high"]) for r in rows]
            cells.append(fmt(values, cis))
        lines.append(
            f"| {label} | {alpha} | {disentangle} | {cells[0]} | {cells[1]} | {cells[2]} | {paper:.3f} | "
            f"{PAPER_OBSCURED.get(key, float('nan')):.3f} |".replace("nan", "–")
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from monai_mammo.atomic_io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per row (paper: 10)")
    ap.add_argument("--eval-seed", type=int, default=1, help="phantom seed of the test set (training uses phantom#seed)")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="bundle overrides for every row, e.g. epochs=20")
    ap.add_argument("--output", default=str(BUNDLE / "eval" / "ablation"))
    ap.add_argument("--smoke", action="store_true", help="merge configs/smoke.yaml last (a quick check of the script, no figures)")
    args = ap.parse_args()
    sets = {}
    for item in args.set:
        key, _, value = item.partition("=")
        sets[key] = parse_value(value)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_file = out_dir / "ablation.json"
    results = json.loads(results_file.read_text())["results"] if results_file.is_file() else []
    done = {(r["row"], r["seed"]) for r in results}
    meta = {"train_seed": sets.get("phantom#seed", 0), "eval_seed": args.eval_seed, "seeds": args.seeds, "overrides": sets}
    for seed in range(args.seeds):
        for key in args.rows:
            if (key, seed) in done:  # resumable: finished rows are kept
                continue
            smoke = [str(BUNDLE / "configs" / "smoke.yaml")] if args.smoke else []
            result = run_row(key, seed, out_dir, sets, args.eval_seed, args.n_bootstrap, smoke)
            results.append(result)
            m = result["metrics"]
            print(
                f"[ablation] {key} seed {seed}: AUC {m['overall']['auc']:.3f}, obscured {m['obscured']['auc']:.3f}, "
                f"clear {m['clear']['auc']:.3f}, val {result['best_val_auc']:.3f}, {result['train_seconds']:.0f} s",
                flush=True,
            )
            atomic_write_json(results_file, {"meta": meta, "results": results}, default=float)
            (out_dir / "ablation.md").write_text(table(results, meta))
    print(table(results, meta))


if __name__ == "__main__":
    sys.exit(main())
