"""ASN ablations on the phantom benchmark: one table (markdown + JSON).

Zhang et al., CVPR 2019 (Sec. 4.3-4.5) claim (1) the t-test loss beats plain MSE reconstruction at
finding µCs, (2) ASN proposals are at least as good as those of the same U-Net trained as a
segmenter with cross-entropy, (3) the t-test variance terms help (λp = λn = 0 is worse) and (4)
FPR improves the final detections. Each variant is the bundle's own training run with one small
override config from ``bundles/asn/configs/ablations/*.yaml``, evaluated by ``evaluate.yaml`` on the
held-out phantoms (a different seed from training). "FPR off" re-evaluates the t-test model with
``fpr#enabled false`` (no retraining).

Usage (long: one bundle training per variant; run it with ``nice``)::

    nice python benchmarks/asn_ablation.py                       # bundle defaults
    nice python benchmarks/asn_ablation.py --max-epochs 10       # shorter schedule (say so)
    python benchmarks/asn_ablation.py --variants ttest mse --out-dir /tmp/asn_ablation

Writes ``<out-dir>/ablation.md`` and ``<out-dir>/ablation.json``; each variant's models, logs and
metrics live in ``<out-dir>/<variant>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "asn" / "configs"

#: variant -> (override configs merged on train.yaml, label in the table)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "ttest": ([], "ASN, t-test loss (default)"),
    "ttest_no_lambda": (["ablations/ttest_no_lambda.yaml"], "ASN, t-test with λp = λn = 0"),
    "mse": (["ablations/mse.yaml"], "MSE reconstruction"),
    "unet_ce": (["ablations/unet_ce.yaml"], "U-Net + CE (segmenter)"),
}


def _config_list(extra: list[str], evaluate: bool) -> str:
    files = [str(CONFIGS / "train.yaml")] + [str(CONFIGS / f) for f in extra]
    if evaluate:
        files.append(str(CONFIGS / "evaluate.yaml"))
    return "[" + ",".join(f"'{f}'" for f in files) + "]"


def _run(args: list[str], log: Path) -> float:
    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"bundle run failed (exit {proc.returncode}); see {log}")
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=str(REPO / "bundles" / "asn" / "eval" / "ablation"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-epochs", type=int, default=None, help="override train#max_epochs (default: bundle's)")
    parser.add_argument("--skip-train", action="store_true", help="reuse models already in <out-dir>/<variant>/models")
    parser.add_argument("--reuse-existing", action="store_true", help="skip training a variant whose models/model.pt exists")
    parser.add_argument("--extra", nargs="*", default=[], help="more bundle overrides, e.g. --extra --fpr#epochs 1")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        extra_cfgs, label = VARIANTS[name]
        work = out / name
        work.mkdir(parents=True, exist_ok=True)
        common = ["--ckpt_dir", str(work / "models"), "--log_dir", str(work / "runs"), "--output_dir", str(work / "eval")]
        common += list(args.extra)
        train_s = None
        reuse = args.reuse_existing and (work / "models" / "model.pt").is_file()
        if not args.skip_train and not reuse:
            overrides = common + (["--train#max_epochs", str(args.max_epochs)] if args.max_epochs else [])
            print(f"[{name}] training ...", flush=True)
            train_s = _run(["training", "--config_file", _config_list(extra_cfgs, False), *overrides], work / "train.log")
        evals = [("", [])] + ([("fpr_off", ["--fpr#enabled", "False"])] if name == "ttest" else [])
        for suffix, more in evals:
            tag = name if not suffix else f"{name}_{suffix}"
            eval_dir = work / ("eval" if not suffix else f"eval_{suffix}")
            print(f"[{tag}] evaluating ...", flush=True)
            eval_s = _run(
                ["evaluating", "--config_file", _config_list(extra_cfgs, True), *common, "--output_dir", str(eval_dir), *more],
                work / f"evaluate{('_' + suffix) if suffix else ''}.log",
            )
            metrics = json.loads((eval_dir / "metrics.json").read_text())
            rows.append(
                {
                    "variant": tag,
                    "label": label if not suffix else "ASN, t-test, FPR off",
                    "proposals": metrics["proposals"]["recall_at"],
                    "final": metrics["final"]["recall_at"],
                    "num_targets": metrics["final"]["num_targets"],
                    "num_images": metrics["final"]["num_images"],
                    "train_seconds": None if suffix else train_s,
                    "eval_seconds": eval_s,
                }
            )
    meta = {
        "max_epochs": args.max_epochs,
        "extra": args.extra,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    (out / "ablation.json").write_text(json.dumps(meta, indent=2) + "\n")
    pk, fk = ["R@5", "R@10", "R@30"], ["R@1", "R@5", "R@10", "R@20"]
    lines = [
        "| variant | " + " | ".join(f"proposals {k}" for k in pk) + " | " + " | ".join(f"final {k}" for k in fk) + " | train s |",
        "|---" * (2 + len(pk) + len(fk)) + "|",
    ]
    for r in rows:
        t = f"{r['train_seconds']:.0f}" if r["train_seconds"] else "-"
        vals = [r["proposals"].get(k) for k in pk] + [r["final"].get(k) for k in fk]
        lines.append(f"| {r['label']} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + f" | {t} |")
    n = rows[0]["num_targets"] if rows else 0
    lines.append("")
    lines.append(f"{n} µCs on {rows[0]['num_images'] if rows else 0} held-out phantom images (seed 1); "
                 f"max_epochs override: {args.max_epochs or 'none (bundle default)'}.")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
