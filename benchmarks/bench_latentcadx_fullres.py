"""Whole-mammogram LatentCADx segmentation on a full-size 4096 x 3328 phantom DICOM: seconds per image,
peak memory and the true-lesion Dice of the full-image mask.

    python benchmarks/bench_latentcadx_fullres.py [--ckpt bundles/latentcadx/models/model.pt] [--images 1]

Runs ``bundles/latentcadx/configs/inference.yaml`` (the command a user runs: read, resample to
0.25 mm, breast-masked sliding window of mask x classification probability, map back to the stored
4096 x 3328 grid, threshold, components, NIfTI / PNG / JSON) in a child process per image set and
reports its wall time per image and its peak resident memory (``ru_maxrss`` of the child). The
phantom is the bundle's kind at full size and the real 0.07 mm spacing, with the bundle's lesion
and outline options. Dice is of the written label against the phantom's true lesion mask (and, for
reference, of the hand-drawn outline against the true lesion). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "latentcadx"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return float(2 * (a & b).sum() / total) if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=str(BUNDLE / "models" / "model.pt"))
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--cache", default=str(BUNDLE / ".cache" / "phantoms"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from monai_mammo.data.phantoms import ensure_phantoms

    spec = dict(image_size=(4096, 3328), spacing_mm=0.07, p_mass=1.0, p_calc_cluster=1.0, mass_diameter_mm=(4.0, 10.0),
                under_drawn_fraction=0.1, coarse_area_ratio_mass=(1.5, 2.5), coarse_area_ratio_calc=(2.5, 4.0),
                views_per_patient=1)  # fmt: skip
    t0 = time.perf_counter()
    datalist = ensure_phantoms("mammogram", args.cache, args.images, 5, **spec)
    generation_s = time.perf_counter() - t0
    out = Path(args.out or tempfile.mkdtemp(prefix="lcx_fullres_"))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inferring", "--config_file", str(BUNDLE / "configs" / "inference.yaml"),
           "--input_path", str(datalist), "--datalist_keys", "['training', 'validation', 'test']", "--ckpt_path", args.ckpt, "--output_dir", str(out), "--cpu_threads", args.threads]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": args.threads, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if result.returncode:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    content = json.loads(datalist.read_text())
    items = content["training"] + content["validation"] + content["test"]
    dices, outline_dices, n_lesions = [], [], []
    for item in items:
        stem = Path(item["image"]).stem
        label = np.array(Image.open(out / f"{stem}_label.png")) > 0
        truth = np.array(Image.open(datalist.parent / item["mask"])) > 0
        coarse = np.array(Image.open(datalist.parent / item["coarse_mask"])) > 0
        dices.append(_dice(label, truth))
        outline_dices.append(_dice(coarse, truth))
        n_lesions.append(json.loads((out / f"{stem}.json").read_text())["num_boxes"])
    print(json.dumps({
        "images": len(items), "image_size": list(spec["image_size"]), "phantom_generation_s": round(generation_s, 1),
        "inference_wall_s_total": round(wall, 1), "seconds_per_image_incl_startup": round(wall / max(len(items), 1), 1),
        "peak_rss_mb": round(peak_mb), "true_dice": [round(d, 3) for d in dices], "outline_vs_true_dice": [round(d, 3) for d in outline_dices],
        "components": n_lesions, "threads": args.threads, "load_average": os.getloadavg()[0], "output_dir": str(out),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
