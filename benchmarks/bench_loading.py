"""Load + preprocess speed and peak memory for one full-field 14-bit mammogram (issue 3, section 5).

Writes a synthetic 3328x4096 (W x H) 14-bit DICOM MG twice (uncompressed and JPEG 2000 lossless),
then reports images/s (median of ``--runs``) for:

* decode: ``RadiographReader`` (pydicom + pylibjpeg-openjpeg for J2K), to a float32 (1, H, W) MetaTensor;
* resample: ``ResampleToSpacingd`` from ``--source-spacing`` (0.085 mm) to 0.07 mm (bilinear);
* breast mask: ``BreastMaskd`` (Otsu + largest component, full-resolution refinement);
* pipeline: decode + resample + breast mask + ``ScaleToEightBitd`` end to end;

and the peak resident memory of the full pipeline on one image, measured in a fresh subprocess as
``ru_maxrss`` after the run minus ``ru_maxrss`` after the imports (plus the absolute value).

Run:  nice python benchmarks/bench_loading.py [--runs 5] [--size 4096 3328] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_breast(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth 14-bit breast: half-ellipse at the left edge, thickness fall-off, low-frequency texture, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((yy - 0.5 * h) / (0.45 * h)) ** 2 + (xx / (0.75 * w)) ** 2)
    thickness = np.sqrt(np.clip(1.0 - r, 0.0, 1.0))
    coarse = rng.normal(size=(h // 64 + 2, w // 64 + 2)).astype(np.float32)
    from scipy.ndimage import zoom

    texture = zoom(coarse, (h / coarse.shape[0], w / coarse.shape[1]), order=3)[:h, :w]
    img = 1500.0 + thickness * (9000.0 + 1500.0 * texture) + rng.normal(0, 60, size=(h, w)).astype(np.float32)
    img[r >= 1.0] = 300.0 + rng.normal(0, 20, size=int((r >= 1.0).sum()))
    return np.clip(img, 0, 2**14 - 1).astype(np.uint16)


def write_dicoms(workdir: Path, h: int, w: int, spacing: float) -> dict[str, Path]:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import JPEG2000Lossless, ExplicitVRLittleEndian, generate_uid

    arr = synthetic_breast(h, w)
    out = {}
    for name, syntax in (("uncompressed", None), ("j2k", JPEG2000Lossless)):
        path = workdir / f"bench_{name}_{h}x{w}.dcm"
        if not path.exists():
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.Manufacturer, ds.ImageLaterality, ds.ViewPosition = "MG", "bench", "L", "CC"
            ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = h, w, 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
            ds.ImagerPixelSpacing = [spacing, spacing]
            ds.PixelData = arr.tobytes()
            if syntax is not None:
                ds.compress(syntax)
            tmp = path.with_suffix(".tmp")
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, path)
        out[name] = path
    return out


def timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _vm_hwm_mb() -> float | None:
    """Peak resident set size of this process (VmHWM) in MB, Linux only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_memory_child(path: str) -> None:
    """Run in a fresh process: one full pipeline, print peak RSS figures (MB) as JSON.

    ``ru_maxrss`` is not usable in a child (Linux carries the parent's high-water mark across
    fork/exec), so the peak (VmHWM) is reset after the imports via ``/proc/self/clear_refs`` and read
    after the run; ``increment_mb`` is then the pipeline's own peak above the imported libraries.
    """
    from monai_mammo.transforms.breast import BreastMaskd
    from monai_mammo.transforms.intensity import ScaleToEightBitd
    from monai_mammo.transforms.io import LoadRadiographd
    from monai_mammo.transforms.spacing import ResampleToSpacingd

    rss_before = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_before = float(line.split()[1]) / 1024.0
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    d = LoadRadiographd(keys="image")({"image": path})
    d = ResampleToSpacingd(keys="image", target_spacing=0.07)(d)
    d = BreastMaskd(keys="image")(d)
    d = ScaleToEightBitd(keys="image")(d)
    peak = _vm_hwm_mb()
    if peak is None or rss_before is None:  # non-Linux fallback: whole-process peak
        peak, rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 0.0
    print(json.dumps({"after_imports_mb": rss_before, "peak_mb": peak, "increment_mb": peak - rss_before,
                      "out_shape": list(d["image"].shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", nargs=2, type=int, default=(4096, 3328), metavar=("H", "W"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source-spacing", type=float, default=0.085)
    parser.add_argument("--workdir", type=Path, default=None, help="where the DICOMs are written (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        peak_memory_child(args._child)
        return

    import torch

    from monai_mammo.transforms.breast import BreastMaskd
    from monai_mammo.transforms.intensity import ScaleToEightBitd
    from monai_mammo.transforms.io import LoadRadiographd
    from monai_mammo.transforms.spacing import ResampleToSpacingd

    h, w = args.size
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_loading_"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = write_dicoms(workdir, h, w, args.source_spacing)
    print(f"wrote {', '.join(f'{k}: {v.stat().st_size / 2**20:.1f} MiB' for k, v in files.items())} "
          f"({time.perf_counter() - t0:.1f} s) in {workdir}")
    # memory first, in a fresh process, before this one holds images
    child = subprocess.run([sys.executable, __file__, "--_child", str(files["j2k"])], capture_output=True, text=True, check=True)
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    load = LoadRadiographd(keys="image")
    resample = ResampleToSpacingd(keys="image", target_spacing=0.07)
    mask = BreastMaskd(keys="image")
    scale = ScaleToEightBitd(keys="image")
    results: dict = {"size_hw": [h, w], "runs": args.runs, "torch_threads": torch.get_num_threads(),
                     "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    loaded = load({"image": str(files["uncompressed"])})
    resampled = resample(loaded)
    for name, path in files.items():
        med, _ = timed(lambda p=path: load({"image": str(p)}), args.runs)
        results[f"decode_{name}_s"] = med
    results["resample_s"], _ = timed(lambda: resample(loaded), args.runs)
    results["resampled_shape"] = list(resampled["image"].shape)
    results["breast_mask_s"], _ = timed(lambda: mask(resampled), args.runs)
    results["pipeline_j2k_s"], _ = timed(lambda: scale(mask(resample(load({"image": str(files["j2k"])})))), args.runs)
    results["memory_j2k_pipeline"] = memory
    print(f"\nfull-field {h}x{w} 14-bit, median of {args.runs} runs, torch threads {results['torch_threads']}, "
          f"load avg {results['load_avg_1min']:.1f}")
    for key in ("decode_uncompressed_s", "decode_j2k_s", "resample_s", "breast_mask_s", "pipeline_j2k_s"):
        print(f"  {key[:-2]:<22} {results[key]:7.3f} s   {1.0 / results[key]:6.2f} images/s")
    mem = results["memory_j2k_pipeline"]
    print(f"  peak RSS (J2K pipeline, fresh process): {mem['increment_mb']:.0f} MB above the "
          f"{mem['after_imports_mb']:.0f} MB of imported libraries ({mem['peak_mb']:.0f} MB process peak)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
