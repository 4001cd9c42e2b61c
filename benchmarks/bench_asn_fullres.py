#!/usr/bin/env python
"""Full-resolution ASN inference benchmark: breast-only vs MONAI's plain sliding window.

On one 4096 x 3328 (H x W) phantom mammogram at 70 um (``monai_mammo.data.phantoms``, DICOM MG,
read with ``monai_mammo.transforms.io.LoadRadiographd``), with a breast mask (Otsu + largest
component + hole filling), it runs the ASN reconstruction U-Net
(``monai_mammo.networks.asn.AnomalySeparationUNet``, default widths) with

  (a) ours:  ``MaskedSlidingWindowInferer(..., mask=breast)`` (tiles touching the breast only),
  (b) MONAI: ``monai.inferers.SlidingWindowInferer`` over the whole image,

same weights, same roi / overlap / blending / batch size, alternating in the same process, and
reports the median seconds per image, the peak memory, the speed ratio, the max |difference| of
the residual maps inside the breast, the breast coverage, and the compute floor: the network's
FLOPs per pixel (``torch.utils.flop_counter.FlopCounterMode`` on one tile) times the breast area
(and times the tiles actually computed), divided by this machine's measured fp32 matmul rate.

Memory method: CPU: peak resident set size of the process during each run (Linux
``/proc/self/status`` VmHWM, reset before each run through ``/proc/self/clear_refs``; where that
is unavailable, ``resource.getrusage`` ru_maxrss, which never decreases: then only the first run's
figure is a true per-run peak). CUDA: ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, plus the host RSS.

Usage::

    nice python benchmarks/bench_asn_fullres.py                   # CPU, fp32, auto repeats
    python benchmarks/bench_asn_fullres.py --device cuda --amp bf16 --repeats 5
    nice python benchmarks/bench_asn_fullres.py --roi 128 256 512 --json-out bench.json

Extra ``--roi`` values after the first are timed for ours only, once each (tile-size sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_mammo.inferers.breast_sliding_window import MaskedSlidingWindowInferer, resolve_amp_dtype

IMAGE_SIZE = (4096, 3328)  # (H, W): a 3328 x 4096 (W x H) full-field detector at 70 um


# --------------------------------------------------------------------------- memory
def _proc_status(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to VmRSS
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory of the code in a ``with`` block (see the module docstring for the method)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_rss = 0
        self.rss_before = 0
        self.cuda_peak: int | None = None
        self.method = ""

    def __enter__(self) -> PeakMemory:
        self.resettable = _reset_peak_rss()
        self.rss_before = _proc_status("VmRSS") or 0
        self._maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated()
        hwm = _proc_status("VmHWM")
        if self.resettable and hwm is not None:
            self.peak_rss = hwm
            self.method = "VmHWM reset via /proc/self/clear_refs"
        else:
            self.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "ru_maxrss (monotonic)"

    @property
    def delta(self) -> int:
        return max(self.peak_rss - self.rss_before, 0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- inputs
def load_phantom(cache_dir: Path, seed: int, size: tuple[int, int] = IMAGE_SIZE) -> tuple[torch.Tensor, str]:
    """(1, 1, H, W) float32 image in [0, 1] (default 4096 x 3328) and a description of its source."""
    try:
        from monai_mammo.data.phantoms import ensure_phantoms
        from monai_mammo.transforms.io import LoadRadiographd

        datalist = ensure_phantoms(
            "mammogram", cache_dir, n=1, seed=seed, image_size=size, views_per_patient=1,
            syntax_probs=(1.0, 0.0, 0.0),
        )
        meta = json.loads(Path(datalist).read_text())
        item = (meta.get("training") or []) + (meta.get("validation") or []) + (meta.get("test") or [])
        path = Path(datalist).parent / item[0]["image"]
        img = LoadRadiographd(keys="image", intensity="full_range")({"image": str(path)})["image"]
        return torch.as_tensor(img.as_tensor())[None].float(), f"phantom DICOM {path.name} (seed {seed}, RadiographReader full_range)"
    except Exception as e:  # noqa: BLE001 - the benchmark must still run on a partial checkout
        print(f"[bench] phantom/reader unavailable ({type(e).__name__}: {e}); using a built-in silhouette", file=sys.stderr)
        return _silhouette(seed, size), "built-in silhouette phantom (monai_mammo.data.phantoms unavailable)"


def _silhouette(seed: int, size: tuple[int, int] = IMAGE_SIZE) -> torch.Tensor:
    # Half-ellipse breast on the left edge (~50 % of the field) with smooth texture and noise.
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = ((yy - 0.5 * h) / (0.47 * h)) ** 2 + (xx / (0.62 * w)) ** 2
    inside = r <= 1.0
    low = rng.standard_normal((h // 64, w // 64)).astype(np.float32)
    tex = torch.nn.functional.interpolate(torch.from_numpy(low)[None, None], size=(h, w), mode="bicubic")[0, 0].numpy()
    img = np.where(inside, 0.45 + 0.1 * tex + 0.2 * np.sqrt(np.clip(1 - r, 0, 1)), 0.0)
    img += inside * rng.normal(0, 0.01, size=(h, w)).astype(np.float32)
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))[None, None]


def breast_mask(image: torch.Tensor, spacing_mm: float = 0.07) -> tuple[torch.Tensor, str]:
    """Otsu + largest connected component + hole filling (METHODS.md section 1 preprocessing).

    Uses ``monai_mammo.transforms.breast.breast_mask`` (the bundle's own) when present.
    """
    try:
        from monai_mammo.transforms.breast import breast_mask as mm_breast_mask

        m = np.asarray(mm_breast_mask(image[0], spacing=spacing_mm), dtype=bool)
        if m.any():
            return torch.from_numpy(m)[None, None], "monai_mammo.transforms.breast.breast_mask (Otsu + largest component)"
    except ImportError:
        pass
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    a = image[0, 0].numpy()
    thr = float(threshold_otsu(a[::4, ::4]))  # Otsu on a 1/16 subsample: same threshold, 16x cheaper
    lab, n = ndimage.label(a > thr)
    if n == 0:
        raise ValueError("bench_asn_fullres: Otsu found no foreground in the phantom image")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    m = ndimage.binary_fill_holes(lab == sizes.argmax())
    return torch.from_numpy(m)[None, None], f"Otsu (t={thr:.3f}) + largest component + fill holes"


def build_network(weights: str | None) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    try:
        from monai_mammo.networks.asn import AnomalySeparationUNet

        net: torch.nn.Module = AnomalySeparationUNet()
        desc = f"AnomalySeparationUNet(channels={tuple(net.channels)}) default widths"  # type: ignore[attr-defined]
    except ImportError:
        from monai.networks.nets import BasicUNet

        net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(16, 32, 64, 128, 128, 16))
        desc = "STAND-IN BasicUNet(16..128) (monai_mammo.networks.asn unavailable)"
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(state)
        desc += f", weights {weights}"
    else:
        desc += ", Kaiming-initialised weights (speed does not depend on the values)"
    n_params = sum(p.numel() for p in net.parameters())
    return net.eval(), f"{desc}, {n_params / 1e6:.2f} M params"


# --------------------------------------------------------------------------- compute floor
def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    n = 2048 if device.type == "cpu" else 8192
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def tile_flops(net: torch.nn.Module, roi: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, roi, roi, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x)
    return float(fc.get_total_flops())


# --------------------------------------------------------------------------- runs
def _wrap_net(
    net: torch.nn.Module, device: torch.device, amp: torch.dtype | None, channels_last: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable both inferers get: optional channels-last tiles and autocast, nothing else."""
    if channels_last:
        net.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if amp is None:
            return net(x)
        with torch.autocast(device_type=device.type, dtype=amp):
            return net(x)

    return run


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float, PeakMemory]:
    with PeakMemory(device) as pm, torch.no_grad():
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        dt = time.perf_counter() - t
    return out, dt, pm


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast dtype (default none = fp32)")
    p.add_argument("--repeats", default="auto", help="runs per method; 'auto' (default) fits --time-budget, 1..5")
    p.add_argument("--time-budget", type=float, default=300.0, help="seconds for the timed runs with --repeats auto (default 300)")
    p.add_argument("--roi", type=int, nargs="+", default=[128], help="tile side(s); the first is compared, others: ours once (default 128: smaller tiles hug the breast)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap (default 0.25, MONAI's default)")
    p.add_argument("--sw-batch-size", type=int, default=1, help="tiles per network call (default 1: best on CPU)")
    p.add_argument("--mode", default="constant", choices=["constant", "gaussian"], help="blending (default constant)")
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                   help="channels-last network for both methods (auto: on for CPU, ~1.5x faster convs there)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    p.add_argument("--weights", default=None, help="optional ASN state dict (loaded with weights_only=True)")
    p.add_argument("--seed", type=int, default=7, help="phantom seed (default 7)")
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "monai_mammo_bench_asn"), help="phantom cache")
    p.add_argument("--image-size", type=int, nargs=2, default=list(IMAGE_SIZE), metavar=("H", "W"),
                   help="phantom size (default 4096 3328; smaller only for smoke tests)")
    p.add_argument("--json-out", default=None, help="write all figures to this JSON file")
    args = p.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_asn_fullres: --device cuda given but CUDA is not available")
    amp = resolve_amp_dtype(args.amp)
    roi = args.roi[0]

    t0 = time.perf_counter()
    image, image_desc = load_phantom(Path(args.cache_dir), args.seed, tuple(args.image_size))
    mask, mask_desc = breast_mask(image)
    image = image * mask  # METHODS.md section 1: the background is zeroed after Otsu
    net, net_desc = build_network(args.weights)
    setup_s = time.perf_counter() - t0
    coverage = float(mask.float().mean())
    breast_px = int(mask.sum())
    image = image.to(device)
    net = net.to(device)
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cpu")
    run_net = _wrap_net(net, device, amp, channels_last)

    # autocast lives in run_net for both methods (the inferer's own `amp` argument does the same)
    ours = MaskedSlidingWindowInferer(roi_size=roi, sw_batch_size=args.sw_batch_size, overlap=args.overlap, mode=args.mode)
    from monai.inferers import SlidingWindowInferer

    plain = SlidingWindowInferer(roi_size=roi, sw_batch_size=args.sw_batch_size, overlap=args.overlap, mode=args.mode)

    # compute floor ingredients
    gflops_fp32 = matmul_gflops(device)
    gflops_amp = matmul_gflops(device, amp) if amp is not None else None
    flops_tile = tile_flops(net, roi, device)
    flops_px = flops_tile / roi**2

    # warm-up (first-call allocations, oneDNN/cuDNN kernel selection), also estimates a tile time
    with torch.no_grad():
        x = torch.rand(args.sw_batch_size, 1, roi, roi, device=device)
        run_net(x)
        _sync(device)
        t = time.perf_counter()
        run_net(x)
        _sync(device)
        tile_s = (time.perf_counter() - t) / args.sw_batch_size

    from monai.data.utils import dense_patch_slices

    from monai_mammo.inferers.breast_sliding_window import _scan_interval

    def tile_counts(r: int) -> tuple[int, int]:
        shape = tuple(image.shape[2:])
        sl = dense_patch_slices(shape, (r, r), _scan_interval(shape, (r, r), (args.overlap, args.overlap)))
        m = mask[0, 0]
        return len(sl), sum(bool(m[s].any()) for s in sl)

    tiles_total, tiles_ours = tile_counts(roi)
    if args.repeats == "auto":
        est = tile_s * (tiles_total + tiles_ours)
        repeats = int(min(5, max(1, args.time_budget // max(est, 1e-9))))
    else:
        repeats = max(1, int(args.repeats))
    print(
        f"[bench] {device} amp={args.amp}: {tiles_ours}/{tiles_total} tiles of {roi}px; ~{tile_s:.2f} s/tile -> "
        f"{repeats} repeat(s) (est. {tile_s * (tiles_total + tiles_ours) * repeats:.0f} s)",
        file=sys.stderr,
        flush=True,
    )

    t_ours: list[float] = []
    t_plain: list[float] = []
    mem_ours: list[PeakMemory] = []
    mem_plain: list[PeakMemory] = []
    max_diff = float("nan")
    m_dev = mask.to(device)
    for r in range(repeats):
        # alternate the order so drift in machine load does not favour one method
        order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
        kept: dict[str, torch.Tensor] = {}
        for which in order:
            if which == "ours":
                out, dt, pm = timed(lambda: ours(image, run_net, mask=m_dev), device)
                t_ours.append(dt)
                mem_ours.append(pm)
            else:
                out, dt, pm = timed(lambda: plain(image, run_net), device)
                t_plain.append(dt)
                mem_plain.append(pm)
            if r == 0:
                # the residual map |f(I) - I| (Zhang et al. Eq. 1), kept inside the breast only
                kept[which] = (out - image).abs()[m_dev.expand_as(out)].float()
            del out
        if r == 0:
            max_diff = float((kept["ours"] - kept["plain"]).abs().max())
        del kept

    stats = dict(ours.last_stats)
    s_ours, s_plain = statistics.median(t_ours), statistics.median(t_plain)
    # each repeat's two runs are adjacent in time, so their ratio is robust to load drift between
    # repeats on a shared machine; the ratio of the medians is reported beside it
    paired = statistics.median(p / o for p, o in zip(t_plain, t_ours))
    # re-measure the matmul rate after the runs and keep the best: the machine's capacity
    gflops_fp32 = max(gflops_fp32, matmul_gflops(device))
    floor_breast = flops_px * breast_px / (gflops_fp32 * 1e9)
    floor_tiles = flops_tile * stats["tiles_computed"] / (gflops_fp32 * 1e9)

    # candidate extraction on the last residual map: its cost at full resolution
    from monai_mammo.regions import regions_from_map

    with torch.no_grad():
        rec = ours(image, run_net, mask=m_dev)
        residual = (rec - image).abs()[0, 0].float().cpu().numpy()
    del rec
    t = time.perf_counter()
    cands = regions_from_map(residual, mask=mask[0, 0].numpy(), threshold=0.999, threshold_mode="quantile")
    cand_s = time.perf_counter() - t
    del residual

    sweep = []
    for r2 in args.roi[1:]:
        tt, tc = tile_counts(r2)
        inf2 = MaskedSlidingWindowInferer(roi_size=r2, sw_batch_size=args.sw_batch_size, overlap=args.overlap, mode=args.mode)
        out, dt, pm = timed(lambda: inf2(image, run_net, mask=m_dev), device)
        del out
        sweep.append({"roi": r2, "tiles_total": tt, "tiles_computed": tc, "seconds": dt, "peak_rss_bytes": pm.peak_rss})

    gib = 1024**3
    res: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "amp": args.amp,
        "image": image_desc,
        "image_shape": list(image.shape),
        "mask": mask_desc,
        "network": net_desc,
        "roi": roi,
        "overlap": args.overlap,
        "mode": args.mode,
        "sw_batch_size": args.sw_batch_size,
        "channels_last": channels_last,
        "repeats": repeats,
        "breast_coverage": coverage,
        "tiles_total": stats["tiles_total"],
        "tiles_computed": stats["tiles_computed"],
        "tile_ratio": stats["tiles_total"] / stats["tiles_computed"],
        "seconds_ours": t_ours,
        "seconds_plain": t_plain,
        "median_s_ours": s_ours,
        "median_s_plain": s_plain,
        "speedup": s_plain / s_ours,
        "speedup_paired_median": paired,
        "max_abs_diff_in_breast": max_diff,
        "peak_rss_bytes_ours": max(m.peak_rss for m in mem_ours),
        "peak_rss_bytes_plain": max(m.peak_rss for m in mem_plain),
        "peak_rss_delta_bytes_ours": max(m.delta for m in mem_ours),
        "peak_rss_delta_bytes_plain": max(m.delta for m in mem_plain),
        "cuda_peak_bytes_ours": max((m.cuda_peak or 0) for m in mem_ours) if device.type == "cuda" else None,
        "cuda_peak_bytes_plain": max((m.cuda_peak or 0) for m in mem_plain) if device.type == "cuda" else None,
        "memory_method": mem_ours[0].method + ("; CUDA: torch.cuda.max_memory_allocated" if device.type == "cuda" else ""),
        "flops_per_tile": flops_tile,
        "flops_per_pixel": flops_px,
        "matmul_gflops_fp32": gflops_fp32,
        "matmul_gflops_amp": gflops_amp,
        "floor_breast_s": floor_breast,
        "floor_tiles_s": floor_tiles,
        "efficiency_vs_breast_floor": floor_breast / s_ours,
        "efficiency_vs_tiles_floor": floor_tiles / s_ours,
        "candidate_extraction_s": cand_s,
        "candidates_q0999": len(cands),
        "setup_s": setup_s,
        "roi_sweep": sweep,
    }

    def fmt_b(b: float | None) -> str:
        return "-" if b is None else f"{b / gib:.2f} GiB"

    rows = [
        ("", "ours (breast-only)", "MONAI SlidingWindowInferer"),
        ("tiles computed", f"{stats['tiles_computed']}", f"{stats['tiles_total']}"),
        ("median s / image", f"{s_ours:.2f}", f"{s_plain:.2f}"),
        ("runs (s)", " ".join(f"{v:.1f}" for v in t_ours), " ".join(f"{v:.1f}" for v in t_plain)),
        ("peak RSS (process)", fmt_b(res["peak_rss_bytes_ours"]), fmt_b(res["peak_rss_bytes_plain"])),
        ("peak RSS - RSS before", fmt_b(res["peak_rss_delta_bytes_ours"]), fmt_b(res["peak_rss_delta_bytes_plain"])),
    ]
    if device.type == "cuda":
        rows.append(("CUDA peak allocated", fmt_b(res["cuda_peak_bytes_ours"]), fmt_b(res["cuda_peak_bytes_plain"])))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print(f"ASN full-resolution inference benchmark ({res['device_name']}, {res['torch_threads']} threads, "
          f"load {res['loadavg_1min']}, amp={args.amp})")
    print(f"  image    : {image_desc}, shape {tuple(image.shape)}")
    print(f"  mask     : {mask_desc}; breast coverage {coverage:.1%}")
    print(f"  network  : {net_desc}")
    print(f"  tiling   : roi {roi}, overlap {args.overlap}, mode {args.mode}, sw_batch_size {args.sw_batch_size}, "
          f"channels_last {channels_last}, median of {repeats} run(s)")
    print()
    for a, b, c in rows:
        print(f"  {a:<{w0}}  {b:<{w1}}  {c}")
    print()
    print(f"  speed-up (plain / ours)          : {res['speedup']:.2f}x ratio of medians, {paired:.2f}x median of "
          f"per-repeat ratios")
    print(f"                                     (tile ratio {res['tile_ratio']:.2f}x, ideal 1/coverage {1 / coverage:.2f}x)")
    print(f"  max |diff| of residuals in breast: {max_diff:.3g}")
    print(f"  network FLOPs                    : {flops_px / 1e3:.1f} kFLOP/pixel ({flops_tile / 1e9:.2f} GFLOP per {roi}px tile)")
    print(f"  fp32 matmul throughput (best)    : {gflops_fp32:.1f} GFLOP/s" +
          (f"; {args.amp} {gflops_amp:.1f} GFLOP/s" if gflops_amp else ""))
    print(f"  compute floor, breast area       : {floor_breast:.2f} s  -> ours at {res['efficiency_vs_breast_floor']:.0%} of it")
    print(f"  compute floor, tiles computed    : {floor_tiles:.2f} s  -> ours at {res['efficiency_vs_tiles_floor']:.0%} of it")
    print(f"  candidate extraction (top 0.1%)  : {cand_s:.2f} s, {len(cands)} components")
    if sweep:
        print("  tile-size sweep (ours, 1 run)    :")
        for s in [{"roi": roi, "tiles_total": stats["tiles_total"], "tiles_computed": stats["tiles_computed"],
                   "seconds": s_ours, "peak_rss_bytes": res["peak_rss_bytes_ours"]}] + sweep:
            print(f"    roi {s['roi']:>4}: {s['tiles_computed']:>4}/{s['tiles_total']:<4} tiles, {s['seconds']:.2f} s, "
                  f"peak RSS {fmt_b(s['peak_rss_bytes'])}")
    print(f"  memory method: {res['memory_method']}")
    print("  (ours blends MONAI's own tiles: it cannot beat the tile ratio; on a shared CPU --threads 1 is steadier)")

    if args.json_out:
        out_path = Path(args.json_out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(out_path.name + ".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, out_path)  # atomic
    return res


if __name__ == "__main__":
    main()
