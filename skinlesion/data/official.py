"""Bring the official ISIC 2019 files into the repository as DVC imports.

    skinlesion import-isic --out data/isic2019
    skinlesion import-isic --test --out data/isic2019-test

runs `dvc import-url` for the training image zip and the two CSVs (so DVC records where they
came from and `dvc update` can refresh them), then checks the CSVs' md5 against the official
release's. With --test: the test images (`ISIC_2019_Test_Input.zip`, 8,238 images, some of
none of the eight classes) and their metadata, and the test ground truth where the server
has it. Commit the `.dvc` files it writes. Needs network the first time only.
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
TEST_IMAGE_ZIP = "ISIC_2019_Test_Input.zip"
TEST_METADATA_CSV = "ISIC_2019_Test_Metadata.csv"  # image, age_approx, anatom_site_general, sex
TEST_GROUND_TRUTH_CSV = "ISIC_2019_Test_GroundTruth.csv"
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


def _import_url(base_url: str, name: str, out: Path, check: bool = True) -> bool:
    """`dvc import-url` of `base_url/name` to `out/name`; whether it worked."""
    log.info("importing %s/%s", base_url, name)
    command = [sys.executable, "-m", "dvc", "import-url", f"{base_url}/{name}", str(out / name)]
    return subprocess.run(command, check=check).returncode == 0


def import_files(base_url: str, out: Path) -> None:
    """`dvc import-url` each official training file from `base_url` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (GROUND_TRUTH_CSV, METADATA_CSV, IMAGE_ZIP):
        _import_url(base_url, name, out)


def import_test_files(base_url: str, out: Path) -> None:
    """`dvc import-url` the official test images and metadata from `base_url` into `out`, and
    the test ground truth if `base_url` serves it (a warning if not)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (TEST_METADATA_CSV, TEST_IMAGE_ZIP):
        _import_url(base_url, name, out)
    if not _import_url(base_url, TEST_GROUND_TRUTH_CSV, out, check=False):
        log.warning(
            "%s/%s could not be imported (see dvc's message above): the test images and metadata are; "
            "score the submission on the challenge's site instead",
            base_url,
            TEST_GROUND_TRUTH_CSV,
        )
