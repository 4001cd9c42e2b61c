"""Run a bundle the way its users do (``python -m monai.bundle run ...``), for the bundle tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class BundleRunner:
    """One bundle under test: its config file lists, ``monai.bundle`` runs and parsers.

    Args:
        name: the folder under ``bundles/``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.root = REPO / "bundles" / name
        self.configs = self.root / "configs"

    def config_files(self, *names: str) -> str:
        """A ``--config_file`` value: files of ``configs/``, merged in this order."""
        return str([f"bundles/{self.name}/configs/{name}" for name in names])

    def run(self, args: list[str], expect_ok: bool = True) -> subprocess.CompletedProcess:
        """``python -m monai.bundle run *args`` from the repository root, one torch thread."""
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
        if expect_ok:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    @staticmethod
    def dirs(tmp: Path) -> list[str]:
        """Overrides that keep a run's phantoms, weights, outputs and logs under ``tmp``."""
        return ["--phantom#cache_dir", str(tmp / "phantoms"), "--ckpt_dir", str(tmp / "models"), "--output_dir", str(tmp / "eval"), "--log_dir", str(tmp / "runs")]

    def parser(self, *names: str, **overrides):
        """A ``ConfigParser`` of ``configs/`` files with ``bundle_root`` and ``overrides`` set."""
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([str(self.configs / name) for name in names])
        parser.update({"bundle_root": str(self.root), **overrides})
        return parser
