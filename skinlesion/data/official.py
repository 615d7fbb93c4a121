"""Bring the official ISIC 2019 training files into the repository as DVC imports.

    skinlesion import-isic --out data/isic2019

runs `dvc import-url` for the image zip and the two CSVs (so DVC records where they came
from and `dvc update` can refresh them), then checks the CSVs' md5 against the official
release's. Commit the `.dvc` files it writes. Needs network the first time only.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

from skinlesion.data.isic import GROUND_TRUTH_CSV, IMAGE_ZIP, METADATA_CSV
from skinlesion.errors import DataError

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://isic-challenge-data.s3.amazonaws.com/2019"
# md5 of the official CSVs (the 9 GB zip is checked by DVC's own hashing, not here)
OFFICIAL_MD5 = {GROUND_TRUTH_CSV: "2c02bdcc6e7f36d355f4f86b210595ae", METADATA_CSV: "8ca5fdef200ffd8579f48c823b504f7e"}


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_labels(folder: Path) -> None:
    """Raise DataError naming each CSV whose md5 is not the official release's."""
    for name, expected in OFFICIAL_MD5.items():
        found = md5(folder / name)
        if found != expected:
            raise DataError(
                f"{folder / name}: md5 {found} is not that of the official ISIC 2019 file ({expected}); "
                "it is another version or damaged: download it again, or pass --no-verify for data of your own"
            )


def import_files(base_url: str, out: Path) -> None:
    """`dvc import-url` each official file from `base_url` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (GROUND_TRUTH_CSV, METADATA_CSV, IMAGE_ZIP):
        log.info("importing %s/%s", base_url, name)
        subprocess.run([sys.executable, "-m", "dvc", "import-url", f"{base_url}/{name}", str(out / name)], check=True)
