from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.params import CLASSES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real ISIC 2019 files kept beside the checkout (../shared/data), or skip."""
    root = Path(os.environ.get("ISIC_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (root / "isic2019-labels").is_dir():
        pytest.skip(f"real ISIC 2019 files not found at {root} (set ISIC_SHARED_DATA)")
    return root


def write_isic_csvs(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Write ISIC-format CSVs for (image, class, lesion_id) rows under `root`; return root."""
    root.mkdir(parents=True, exist_ok=True)
    truth = ["image," + ",".join(CLASSES) + ",UNK"]
    meta = ["image,age_approx,anatom_site_general,lesion_id,sex"]
    for image, label, lesion in rows:
        truth.append(image + "," + ",".join("1.0" if c == label else "0.0" for c in CLASSES) + ",0.0")
        meta.append(f"{image},45,anterior torso,{lesion},female")
    (root / "ISIC_2019_Training_GroundTruth.csv").write_bytes(("\r\n".join(truth) + "\r\n").encode())
    (root / "ISIC_2019_Training_Metadata.csv").write_bytes(("\r\n".join(meta) + "\r\n").encode())
    return root


def write_params(folder: Path, overrides: dict[str, dict]) -> Path:
    """Write the repository's params.yaml into `folder` with some section keys replaced."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m stages.<module> ARGS` in `cwd` (which holds a params.yaml)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=cwd, env=env, capture_output=True, text=True)
