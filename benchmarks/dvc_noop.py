"""How long DVC itself takes on a full-size pipeline: no-op `dvc repro` and `dvc status`.

Builds a copy of the project whose data root holds all 25,331 ISIC 2019 images (the real
label files; small generated JPEGs hard-linked under every name), runs the pipeline once
at a tiny image size, then times `dvc status` and a `dvc repro` with nothing to do. Run
twice in one go, with the images as 25,331 files in ISIC_2019_Training_Input/ and as the
one ISIC_2019_Training_Input.zip, to compare what DVC must walk and hash.

    python -m benchmarks.dvc_noop --labels ../shared/data/isic2019-labels --out benchmarks/results/cpu/dvc_noop.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

from benchmarks import publish
from benchmarks.prepare import link_images, make_jpegs
from benchmarks.timing import measure
from skinlesion.data.isic import GROUND_TRUTH_CSV, IMAGE_DIR, IMAGE_ZIP, METADATA_CSV, read_labels

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "prepare": {"image_size": 32, "workers": 0},
    "sampling": {"majority_target": 40, "minority_target": 20, "kmeans_clusters": 2},
    "training": {"epochs": 1, "num_workers": 0},
    "evaluate": {"bootstrap_resamples": 100},
    "gradcam": {"correct_per_class": 1, "wrong_per_class": 0},
}


def dvc_seconds(*args: str, cwd: Path, repeats: int = 1) -> float:
    """Median seconds of `repeats` runs of one dvc command (each must succeed)."""
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-m", "dvc", *args]
    return measure(
        lambda: subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True), repeats=repeats
    ).median_s


def make_repo(root: Path, data_root: Path) -> Path:
    """A clone of the project's committed state with small params and `data_root`."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in {**SMALL, "data": {"root": str(data_root)}}.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True, help="folder with the real ISIC 2019 CSVs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {"images": None}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool = make_jpegs(work / "pool", 48, side=128)  # small files: the zip stays small
        folder, archive = work / "as_folder", work / "as_zip"
        for root in (folder, archive):
            root.mkdir()
            for name in (GROUND_TRUTH_CSV, METADATA_CSV):
                (root / name).write_bytes((args.labels / name).read_bytes())
        images = list(read_labels(folder)["image"])
        report["images"] = len(images)
        link_images(pool, images, folder)
        with zipfile.ZipFile(archive / IMAGE_ZIP, "w", compression=zipfile.ZIP_STORED) as bundle:
            for image in images:
                bundle.write(folder / IMAGE_DIR / f"{image}.jpg", f"{IMAGE_DIR}/{image}.jpg")
        for label, data_root in (("folder_of_jpegs", folder), ("one_zip", archive)):
            repo = make_repo(work / f"repo_{label}", data_root)
            first = dvc_seconds("repro", cwd=repo)
            status = dvc_seconds("status", cwd=repo, repeats=args.repeats)
            noop = dvc_seconds("repro", cwd=repo, repeats=args.repeats)
            report[label] = {
                "first_repro_s": round(first, 1),
                "status_s": round(status, 2),
                "noop_repro_s": round(noop, 2),
            }
    report["status_folder_over_zip"] = round(report["folder_of_jpegs"]["status_s"] / report["one_zip"]["status_s"], 2)
    publish(report, args.out)


if __name__ == "__main__":
    main()
