#!/usr/bin/env python
"""Breast-only vs whole-image sliding window across breast coverages (several phantom seeds).

The speed-up of breast-only tiling is bounded by the tile ratio, which tends to 1 / coverage for
small tiles: at 48 % coverage no tiling can be 2x faster. This script runs
``bench_asn_fullres.py`` (same measurement: ours and MONAI's ``SlidingWindowInferer``
alternating in one process, same weights and tiling, median of ``--repeats`` runs) on one 4096 x
3328 phantom per seed, so the ratio can be read against the coverage of each image.

Usage::

    nice python benchmarks/bench_asn_coverage.py --seeds 1 2 3 4 5 6 7 --roi 128 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_asn_fullres import main as bench_one  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7], help="phantom seeds (default 1..7)")
    p.add_argument("--roi", type=int, default=128, help="tile side (default 128)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap (default 0.25)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    p.add_argument("--repeats", default="3", help="runs per method and seed (default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--image-size", type=int, nargs=2, default=[4096, 3328], metavar=("H", "W"),
                   help="phantom size (default 4096 3328; smaller only for smoke tests)")
    p.add_argument("--json-out", default=None, help="write the per-seed figures to this JSON file")
    args = p.parse_args(argv)

    rows = []
    for seed in args.seeds:
        res = bench_one([
            "--seed", str(seed), "--roi", str(args.roi), "--overlap", str(args.overlap), "--threads", str(args.threads),
            "--repeats", str(args.repeats), "--device", args.device, "--amp", args.amp,
            "--image-size", *(str(v) for v in args.image_size),
        ])
        rows.append({k: res[k] for k in (
            "breast_coverage", "tiles_computed", "tiles_total", "tile_ratio", "median_s_ours", "median_s_plain",
            "speedup", "speedup_paired_median", "max_abs_diff_in_breast", "peak_rss_bytes_ours", "loadavg_1min",
        )} | {"seed": seed, "image": res["image"]})

    rows.sort(key=lambda r: r["breast_coverage"])
    print()
    print(f"Breast-only speed-up against coverage (roi {args.roi}, overlap {args.overlap}, {args.device}, amp={args.amp}, "
          f"median of {args.repeats} runs per method)")
    print("  seed  coverage  tiles ours/all  tile ratio  1/coverage  ours s  MONAI s  speed-up  max|diff|")
    for r in rows:
        print(f"  {r['seed']:>4}  {r['breast_coverage']:>8.1%}  {r['tiles_computed']:>6}/{r['tiles_total']:<7} "
              f"{r['tile_ratio']:>10.2f}  {1 / r['breast_coverage']:>10.2f}  {r['median_s_ours']:>6.2f}  "
              f"{r['median_s_plain']:>7.2f}  {r['speedup']:>7.2f}x  {r['max_abs_diff_in_breast']:.2g}")
    cov = statistics.median(r["breast_coverage"] for r in rows)
    spd = statistics.median(r["speedup"] for r in rows)
    print(f"  median coverage {cov:.1%}, median speed-up {spd:.2f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
