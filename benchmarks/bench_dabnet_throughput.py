"""DAB-Net training throughput with on-the-fly compositing on and off, in the same process.

Builds the dabnet bundle's own training pipeline (CacheDataset + RandMassCompositingd + flips,
DataLoader, DABNet, DisentangleLoss, Adam, the dict-target prepare_batch) from configs/train.yaml, then
alternates timed blocks of training iterations with composites on (stage 2: real + 30 %) and off
(real only, placeholders), and reports the median over the repeats of:

- samples/s (all samples, real + composite) and real samples/s;
- the share of step time spent inside the compositing transform (timed directly around
  RandMassCompositingd.__call__), which must stay < 10 %.

Usage (from the repository root)::

    python benchmarks/bench_dabnet_throughput.py --repeats 5 --iterations 6 --size 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def build(use_composites: bool, args: argparse.Namespace):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "dabnet" / "configs" / "train.yaml"))
    parser.update(
        {
            "bundle_root": str(REPO / "bundles" / "dabnet"),
            "phantom#n": args.n,
            "phantom#n_masses": args.pool,
            "phantom#n_glands": args.pool,
            "phantom#size": args.size,
            "phantom#cache_dir": args.cache_dir,
            "spatial_size": [args.size, args.size],
            "batch_size": args.batch_size,
            "use_composites": use_composites,
            "composite_ratio": args.ratio,
            "device": "$torch.device('%s')" % args.device,
        }
    )
    loader = parser.get_parsed_content("train#dataloader")
    transforms = parser.get_parsed_content("train#preprocessing")
    transforms.set_random_state(seed=0)
    return parser, loader, transforms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per mode (median reported)")
    ap.add_argument("--iterations", type=int, default=6, help="training iterations per timed block")
    ap.add_argument("--size", type=int, default=64, help="ROI size (bundle default 64; paper 224)")
    ap.add_argument("--n", type=int, default=1000, help="phantom ROIs (bundle default 1000)")
    ap.add_argument("--pool", type=int, default=400, help="clear-mass and gland pool sizes (bundle default 400)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache-dir", default=str(REPO / "bundles" / "dabnet" / ".cache" / "phantoms"))
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from monai_mammo.transforms.compositing import RandMassCompositingd

    # time spent inside the compositing transform, per process
    spent = {"seconds": 0.0}
    original_call = RandMassCompositingd.__call__

    def timed_call(self, data):
        start = time.perf_counter()
        try:
            return original_call(self, data)
        finally:
            spent["seconds"] += time.perf_counter() - start

    RandMassCompositingd.__call__ = timed_call

    parser_on, loader_on, _ = build(True, args)
    _, loader_off, _ = build(False, args)
    device = torch.device(args.device)
    network = parser_on.get_parsed_content("network")
    optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    loss_fn = parser_on.get_parsed_content("loss")
    prepare = parser_on.get_parsed_content("prepare_batch")
    # pools are loaded once, outside the timed blocks (as in training, on the first sample)
    for loader in (loader_on, loader_off):
        next(iter(loader))

    def block(loader) -> dict:
        network.train()
        spent["seconds"] = 0.0
        samples = real = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in islice(iter(loader), args.iterations):
            image, targets, _, kwargs = prepare(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(image, **kwargs), targets)
            loss.backward()
            optimizer.step()
            samples += image.shape[0]
            composite = targets.get("is_composite")
            real += image.shape[0] if composite is None else int((~composite.bool()).sum())
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return {
            "samples_per_s": samples / elapsed,
            "real_samples_per_s": real / elapsed,
            "compositing_share": spent["seconds"] / elapsed,
            "step_ms_per_sample": 1000 * elapsed / samples,
            "samples": samples,
        }

    block(loader_on)  # warm-up
    results = {"on": [], "off": []}
    for _ in range(args.repeats):  # alternate so drifting machine load hits both modes alike
        results["on"].append(block(loader_on))
        results["off"].append(block(loader_off))

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    summary = {
        "device": str(device),
        "threads": args.threads,
        "size": args.size,
        "batch_size": args.batch_size,
        "ratio": args.ratio,
        "repeats": args.repeats,
        "iterations": args.iterations,
        "load_average": os.getloadavg(),
        "on_samples_per_s": med("on", "samples_per_s"),
        "on_real_samples_per_s": med("on", "real_samples_per_s"),
        "off_samples_per_s": med("off", "samples_per_s"),
        "on_step_ms_per_sample": med("on", "step_ms_per_sample"),
        "off_step_ms_per_sample": med("off", "step_ms_per_sample"),
        "compositing_share_of_step_time": med("on", "compositing_share"),
        "per_sample_throughput_ratio_on_over_off": med("on", "samples_per_s") / med("off", "samples_per_s"),
        "runs": results,
    }
    print(
        f"device {summary['device']} threads {args.threads} size {args.size} batch {args.batch_size} "
        f"load {summary['load_average'][0]:.1f}\n"
        f"compositing ON : {summary['on_samples_per_s']:.1f} samples/s "
        f"({summary['on_real_samples_per_s']:.1f} real/s), {summary['on_step_ms_per_sample']:.1f} ms/sample\n"
        f"compositing OFF: {summary['off_samples_per_s']:.1f} samples/s, {summary['off_step_ms_per_sample']:.1f} ms/sample\n"
        f"compositing share of step time (median of {args.repeats}): {100 * summary['compositing_share_of_step_time']:.2f} %  "
        f"(requirement < 10 %)\n"
        f"per-sample throughput on/off: {summary['per_sample_throughput_ratio_on_over_off']:.3f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    sys.exit(0 if summary["compositing_share_of_step_time"] < 0.10 else 1)


if __name__ == "__main__":
    main()
