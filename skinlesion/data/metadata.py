"""Patient metadata: each image's approximate age, sex and anatomical site, as the ISIC 2019
metadata CSV gives them, and their encoding as the second input of a model that fuses them
with the image (`model.use_metadata`).

The manifests carry the official file's three columns, `age_approx`, `anatom_site_general`
and `sex`, with an empty cell where a value is missing (the official file leaves many empty:
site for about one image in ten). A missing value is encoded as missing, never dropped and
never guessed: each field has its own missing flag in the vector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinlesion.errors import DataError

FIELDS = ("age_approx", "anatom_site_general", "sex")
SEXES = ("male", "female")
SITES = (
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "upper extremity",
    "lower extremity",
    "head/neck",
    "palms/soles",
    "oral/genital",
)
MAX_AGE = 120.0
# the encoded vector, entry by entry: age in years / 100, then one-hot categories; every
# field ends with its missing flag
FEATURES = (
    "age",
    "age_missing",
    *(f"sex_{sex}" for sex in SEXES),
    "sex_missing",
    *(f"site_{site}" for site in SITES),
    "site_missing",
)


def check_metadata(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The metadata columns of `frame` (one row per image, columns `image` and FIELDS, text),
    stripped and lower-cased, with ages written as numbers ("55.0" -> "55").

    Raises DataError naming `where`, the line (a row's index + 2, as in the CSV it was read
    from) and the image (only `where` for a frame without images: values given by hand), for
    an age that is no number or outside [0, 120], a sex other than male or female, or a site
    that is none of ISIC's. An empty cell stays empty: missing.
    """
    absent = [field for field in FIELDS if field not in frame.columns]
    if absent:
        raise DataError(f"{where}: no metadata columns {absent} (found {list(frame.columns)})")
    values = frame[list(FIELDS)].astype(str).apply(lambda column: column.str.strip().str.lower())
    allowed = {"sex": SEXES, "anatom_site_general": SITES}
    for field, choices in allowed.items():
        bad = values.index[(values[field] != "") & ~values[field].isin(choices)]
        if len(bad):
            _fail(frame, where, bad[0], f"{field} {frame.at[bad[0], field]!r} is none of {list(choices)} (or empty)")
    ages = pd.to_numeric(values["age_approx"].where(values["age_approx"] != ""), errors="coerce")
    bad = values.index[(values["age_approx"] != "") & ~ages.between(0, MAX_AGE)]
    if len(bad):
        _fail(frame, where, bad[0], f"age_approx {frame.at[bad[0], 'age_approx']!r} is not an age in years (0-120)")
    values["age_approx"] = ages.map(lambda age: "" if pd.isna(age) else f"{age:g}")
    return values


def _fail(frame: pd.DataFrame, where: str, index, problem: str) -> None:
    """Raise the error about row `index`; a frame without images is values given by hand."""
    if "image" not in frame.columns:
        raise DataError(f"{where}: {problem}")
    raise DataError(f"{where}: line {int(index) + 2} ({frame.at[index, 'image']}): {problem}")


def encode_metadata(frame: pd.DataFrame, where: str) -> np.ndarray:
    """The model's metadata input for each row of `frame`: (N, len(FEATURES)) float32, checked
    as check_metadata does (errors name `where`)."""
    values = check_metadata(frame, where)
    encoded = np.zeros((len(values), len(FEATURES)), dtype=np.float32)
    age = values["age_approx"].to_numpy()
    known = age != ""
    encoded[known, 0] = age[known].astype(np.float32) / 100
    encoded[~known, 1] = 1
    for name, field, choices in (("sex", "sex", SEXES), ("site", "anatom_site_general", SITES)):
        offset, column = FEATURES.index(f"{name}_{choices[0]}"), values[field].to_numpy()
        for k, choice in enumerate((*choices, "")):  # the last entry is the missing flag
            encoded[column == choice, offset + k] = 1
    return encoded
