"""``monai-mammo predict`` over a folder of phantom DICOMs: s/image, peak memory, skips, resume, 1 vs 2 processes.

Builds ``--n`` phantom mammograms (``monai_mammo.data.phantoms``, ``--size`` H W, default the
full-field 4096 x 3328) in ``WORKDIR/archive``, mixes in one truncated copy (corrupt) and one DICOM
SR (a non-image), then runs the command as a user does (a subprocess per run):

1. ``--dicom-sr --dicom-seg`` on the folder: wall time, s/image, peak memory (the command's
   ``summary.json``), the skip report (``skipped.csv``), ``dciodvfy`` on one SR and one SEG when
   dicom3tools is installed;
2. the same command again: a resumed run, which must process nothing (``done == 0``);
3. JSON only, into fresh folders: one process, then two (``torchrun --nproc_per_node 2`` by
   default, or ``--two workers`` for ``--workers 2``): wall times and their ratio.

Weights: ``--weights DIR`` (checkpoints as training writes them: ``model.pt``, optional ``stages/fpr.pt``),
``--train-smoke`` (the bundle's ``smoke.yaml`` trained into ``WORKDIR/weights`` first), else
random-init weights of ``train.yaml``'s network written to ``WORKDIR/weights`` (the timing of the
architecture; the findings mean nothing). The report goes to stdout and
``WORKDIR/benchmark.json``.

Run:  nice python benchmarks/predict_archive.py --n 50 [--size 4096 3328] [--workdir DIR] [--threads 1]
Check (small):  nice python benchmarks/predict_archive.py --n 6 --size 1024 832 --train-smoke --workdir /tmp/pa
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_archive(workdir: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    """The phantom folder plus a corrupt copy and an SR; returns the archive folder."""
    from monai_mammo.data.phantoms import synthesize

    archive = workdir / "archive"
    if archive.is_dir():
        shutil.rmtree(archive)
    phantoms = workdir / "phantoms"
    if not (phantoms / "datalist.json").is_file():
        # uncompressed files: JPEG 2000 decoding would dominate every timing (see bench_loading.py)
        synthesize("mammogram", phantoms, n=n, seed=seed, image_size=size, syntax_probs=(1.0, 0.0, 0.0))
    (archive / "images").mkdir(parents=True)
    sources = sorted((phantoms / "images").glob("*.dcm"))[:n]
    for path in sources:
        shutil.copy(path, archive / "images" / path.name)
    (archive / "corrupt.dcm").write_bytes(sources[0].read_bytes()[: 64 * 1024])  # truncated pixel data
    write_sr(sources[0], archive / "report.dcm")
    return archive


def write_sr(source: Path, target: Path) -> None:
    """A real DICOM SR to mix in (our own SR writer on an empty record)."""
    import pydicom

    from monai_mammo.dicom.common import Algorithm
    from monai_mammo.dicom.structured_report import write_structured_report

    header = pydicom.dcmread(source, stop_before_pixels=True)
    write_structured_report(target, header, {"points": []}, Algorithm("benchmark", "0"))


def ensure_weights(workdir: Path, bundle: str, weights: Path | None, train_smoke: bool = False) -> dict:
    """Overrides pointing the bundle's inference at its weights folder (``ckpt_dir``).

    ``weights``: a folder of checkpoints as training writes them (``model.pt`` with its
    ``network_spec``; ``fpr.pt`` for ASN, else the FPR is off). ``train_smoke``: train the bundle's
    ``smoke.yaml`` into ``WORKDIR/weights`` first (trained smoke weights, under a minute on CPU).
    Otherwise random-init weights of ``train.yaml``'s ``network_def`` (the timing of the
    architecture; the findings mean nothing).
    """
    import torch
    from monai.bundle import ConfigParser

    from monai_mammo.bundle_predictor import resolve_bundle_root
    from monai_mammo.checkpoints import save_network

    root = resolve_bundle_root(bundle)
    if weights is None:
        weights = workdir / "weights"
        if train_smoke and not (weights / "model.pt").is_file():
            configs = [str(root / "configs" / name) for name in ("train.yaml", "smoke.yaml")]
            command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(configs),
                       "--bundle_root", str(root), "--ckpt_dir", str(weights), "--output_dir", str(workdir / "train_eval")]
            env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run(command, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError("smoke training failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        elif not (weights / "model.pt").is_file():
            parser = ConfigParser()
            parser.read_config(str(root / "configs" / "train.yaml"))
            parser["bundle_root"] = str(root)
            torch.manual_seed(0)
            save_network(parser.get_parsed_content("network_def"), weights / "model.pt")
    overrides: dict = {"ckpt_dir": str(weights)}
    if bundle == "asn":
        # the second stage's weights: models/stages/fpr.pt (the layout since MONAI Label's fix), else an older fpr.pt
        fpr = next((p for p in (weights / "stages" / "fpr.pt", weights / "fpr.pt") if p.is_file()), None)
        overrides.update({"fpr_path": str(fpr)} if fpr is not None else {"use_fpr": False})
    return overrides


def run_command(args: list[str], nproc: int = 1, env_extra: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, exit status and output of ``monai-mammo predict ARGS`` (torchrun when nproc > 1)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "monai_mammo.predict_command", *args]
    else:
        command = [sys.executable, "-m", "monai_mammo.predict_command", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, proc.stdout + proc.stderr


def summaries(out: Path) -> list[dict]:
    files = sorted(out.glob("summary*.json"))
    return [json.loads(f.read_text()) for f in files]


def dciodvfy(path: Path) -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        return "dciodvfy not installed (apt-get install -y dicom3tools)"
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True)
    counts: dict[str, int] = {}
    for line in (proc.stdout + proc.stderr).strip().splitlines():
        counts[line] = counts.get(line, 0) + 1
    return "\n".join(f"{line}" + (f"  (x{n})" if n > 1 else "") for line, n in counts.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="phantom images (default 50)")
    parser.add_argument("--size", type=int, nargs=2, default=(4096, 3328), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", default="asn")
    parser.add_argument("--weights", type=Path, default=None, help="folder with model.pt (and fpr.pt); default random init")
    parser.add_argument("--train-smoke", action="store_true", help="train the bundle's smoke.yaml into WORKDIR/weights first")
    parser.add_argument("--workdir", type=Path, default=Path("predict_archive_bench"))
    parser.add_argument("--threads", default="1", help="torch threads per process (default 1: fair 1 vs 2 processes)")
    parser.add_argument("--max-findings", type=int, default=None, help="passed to the DICOM run: SR with the K best findings")
    parser.add_argument("--two", choices=("torchrun", "workers"), default="torchrun", help="how to run two processes")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    archive = build_archive(workdir, args.n, tuple(args.size), args.seed)
    build_seconds = time.perf_counter() - start
    overrides = ensure_weights(workdir, args.bundle, args.weights, args.train_smoke)
    common = ["--bundle", args.bundle, str(archive), "--threads", str(args.threads), "--no-progress"]
    common += [f"-O{k}={json.dumps(v)}" for k, v in overrides.items()]
    report: dict = {"n": args.n, "size": list(args.size), "bundle": args.bundle, "archive_build_seconds": build_seconds}

    out = workdir / "out_dicom"
    shutil.rmtree(out, ignore_errors=True)
    dicom = ["--dicom-sr", "--dicom-seg"] + (["--max-findings", str(args.max_findings)] if args.max_findings else [])
    report["dicom_arguments"] = dicom
    wall, status, text = run_command([*common, "--out", str(out), *dicom])
    if not summaries(out):
        print(text[-3000:])
        return 1
    (summary,) = summaries(out)
    with open(out / "skipped.csv", newline="") as stream:
        skipped = list(csv.DictReader(stream))
    report["first_run"] = {
        "wall_seconds": wall, "exit_status": status, "done": summary["done"], "skipped": len(summary["skipped"]),
        "seconds_per_image": summary["seconds_per_image"], "peak_rss_mb": summary["peak_rss_mb"],
        "peak_cuda_mb": summary["peak_cuda_mb"], "skipped_csv": skipped,
    }
    if status not in (0, 3):
        print(text[-3000:])
        return 1
    first = sorted((out / "images").glob("*.sr.dcm"))[0]
    report["dciodvfy"] = {"sr": dciodvfy(first), "seg": dciodvfy(first.with_name(first.name.replace(".sr.", ".seg.")))}

    wall, status, _ = run_command([*common, "--out", str(out), *dicom])
    (summary,) = summaries(out)
    report["resumed_run"] = {"wall_seconds": wall, "exit_status": status, "done": summary["done"], "already_complete": summary["resumed"]}

    one, two = workdir / "out_1proc", workdir / "out_2proc"
    for folder in (one, two):
        shutil.rmtree(folder, ignore_errors=True)
    wall_one, status_one, _ = run_command([*common, "--out", str(one)])
    if args.two == "torchrun":
        wall_two, status_two, text_two = run_command([*common, "--out", str(two)], nproc=2)
    else:
        wall_two, status_two, text_two = run_command([*common, "--out", str(two), "--workers", "2"])
    done_two = sum(s["done"] for s in summaries(two))
    report["processes"] = {
        "one": {"wall_seconds": wall_one, "exit_status": status_one, "done": summaries(one)[0]["done"]},
        "two": {"wall_seconds": wall_two, "exit_status": status_two, "done": done_two, "how": args.two},
        "ratio_one_over_two": wall_one / wall_two if wall_two else None,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if status_two not in (0, 3):
        report["processes"]["two"]["output_tail"] = text_two[-3000:]
    (workdir / "benchmark.json").write_text(json.dumps(report, indent=1) + "\n")

    f = report["first_run"]
    print(f"archive: {args.n} phantoms {args.size[0]}x{args.size[1]} + 1 corrupt + 1 SR (built in {build_seconds:.0f} s)")
    print(f"run 1 ({' '.join(dicom)}): exit {f['exit_status']}, {f['done']} done, {f['skipped']} skipped, "
          f"wall {f['wall_seconds']:.1f} s ({f['wall_seconds'] / max(f['done'], 1):.2f} s/image with start-up), "
          f"{f['seconds_per_image']:.2f} s/image processed, peak RSS {f['peak_rss_mb']:.0f} MB"
          + (f", CUDA {f['peak_cuda_mb']:.0f} MB" if f["peak_cuda_mb"] else ""))
    for row in skipped:
        print(f"  skipped {row['path']}: {row['reason']}")
    r = report["resumed_run"]
    print(f"run 2 (resumed): exit {r['exit_status']}, {r['done']} done, {r['already_complete']} already complete, wall {r['wall_seconds']:.1f} s")
    p = report["processes"]
    print(f"JSON only: 1 process {p['one']['wall_seconds']:.1f} s, 2 processes ({args.two}) {p['two']['wall_seconds']:.1f} s, "
          f"ratio {p['ratio_one_over_two']:.2f} on {p['cpu_count']} cores (load {p['load_average'][0]:.1f})")
    print("dciodvfy SR:\n  " + report["dciodvfy"]["sr"].replace("\n", "\n  "))
    print("dciodvfy SEG:\n  " + report["dciodvfy"]["seg"].replace("\n", "\n  "))
    print(f"report: {workdir / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
