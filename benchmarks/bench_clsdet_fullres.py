"""Full-resolution Cls-Det-RS inference on a 4096 x 3328 phantom DICOM at the paper's 224-px windows.

Bakalo et al. 2021 tile 70 µm mammograms with 224 x 224 windows every 112 px. This runs the
bundle's own inference preprocessing (reader, [0, 1] scaling, 0.07 mm grid, breast mask, tiling)
and :func:`monai_mammo.engines.clsdet.infer_images` with the bundle's inferer (regions through the encoder ``chunk_size`` at
a time) on one generated full-size phantom, with a randomly initialised network of the bundle's
architecture at window 224 (the time and memory do not depend on the weights), and reports seconds
per image, regions per image and the process's peak resident memory.

    python benchmarks/bench_clsdet_fullres.py [--repeats 2] [--chunk_size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from monai.bundle import ConfigParser

    from monai_mammo.data.phantoms import synthesize
    from monai_mammo.engines.clsdet import infer_images
    from monai_mammo.networks.clsdet import ClsDetNet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunk_size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="clsdet_fullres_"))
    start = time.perf_counter()
    datalist = synthesize("mammogram", tmp / "phantom", n=1, seed=3, p_mass=1.0, p_calc_cluster=0.0, p_vessel=0.0, syntax_probs=(1.0, 0.0, 0.0))
    generation = time.perf_counter() - start
    image = str(Path(datalist).parent / json.loads(Path(datalist).read_text())["training" if json.loads(Path(datalist).read_text())["training"] else "test"][0]["image"])
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles/clsdet/configs/inference.yaml"))
    parser.update({"bundle_root": str(REPO / "bundles/clsdet"), "spacing_mm": 0.07, "window": 224, "stride": 112, "ckpt_dir": str(tmp), "chunk_size": args.chunk_size})
    preprocessing = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer")  # the bundle's BreastRegionInferer
    torch.manual_seed(0)
    network = ClsDetNet(window=224, channels=(8, 16, 32), strides=(2, 2, 2)).eval()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        results = infer_images(network, [image], preprocessing, tmp / "out", inferer)
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "image": "4096 x 3328 phantom DICOM, 0.07 mm",
        "window_px": 224,
        "stride_px": 112,
        "chunk_size": args.chunk_size,
        "threads": args.threads,
        "regions_per_image": results[0]["num_regions"],
        "seconds_per_image": [round(t, 2) for t in times],
        "peak_rss_mb": round(peak_mb, 1),
        "phantom_generation_s": round(generation, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
