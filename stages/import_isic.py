"""Bring the official ISIC 2019 training files into the repository as DVC imports.

    python -m stages.import_isic --out data/isic2019

runs `dvc import-url` for the image zip and the two CSVs (so DVC records where they came
from and `dvc update` can refresh them), then checks the CSVs' md5 against the official
release's. Commit the `.dvc` files it writes. Needs network the first time only.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
from pathlib import Path

from stages.errors import DataError
from stages.isic import GROUND_TRUTH_CSV, IMAGE_ZIP, METADATA_CSV

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/isic2019"), help="folder to import into (data.root)")
    parser.add_argument("--base-url", default=OFFICIAL_URL, help="where the three files are served")
    parser.add_argument("--no-verify", action="store_true", help="skip the md5 check of the CSVs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import_files(args.base_url.rstrip("/"), args.out)
    if not args.no_verify:
        verify_labels(args.out)
        log.info("the CSVs are the official ISIC 2019 release")


if __name__ == "__main__":
    main()
