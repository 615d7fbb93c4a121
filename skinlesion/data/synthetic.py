"""The synthetic, dermoscopy-like sample that make-sample writes in the ISIC 2019 file format.

Deterministic given `sample.seed`. Classes differ in colour, shape, border and texture
(with noise), and every class mixes visible sub-types (skin tone, lighting, hair) so that
K-Means has structure to find. Lesions may have several images (the same lesion moved,
turned and re-lit), and some rows have no lesion id, as in the real set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field, model_validator
from tqdm import tqdm

from skinlesion.classes import CLASSES
from skinlesion.config import Section, View
from skinlesion.data.isic import GROUND_TRUTH_COLUMNS, GROUND_TRUTH_CSV, IMAGE_DIR, METADATA_COLUMNS, METADATA_CSV


class SampleParams(Section):
    """The synthetic ISIC-format sample written by the make-sample stage."""

    num_images: int = Field(gt=0, description="images in the synthetic sample")
    min_per_class: int = Field(gt=0, description="fewest images of any class in the sample")
    scale: float = Field(ge=0.05, le=1.0, description="size relative to the real 600x450 and 1024x1024 images")
    seed: int = Field(description="the synthetic sample's images, labels and lesions")

    @model_validator(mode="after")
    def _room_for_every_class(self) -> SampleParams:
        if self.min_per_class * len(CLASSES) > self.num_images:
            raise ValueError("min_per_class: times the 8 classes exceeds sample.num_images")
        return self


class SampleRun(View):
    """The params make-sample reads."""

    sample: SampleParams


# Images per class in the real ISIC 2019 training set: the sample keeps these shares.
ISIC_2019_COUNTS = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
REAL_SIZES = ((600, 450), (1024, 1024))  # (width, height) of most real images
SKIN_TONES = np.array([[236, 200, 178], [205, 158, 122], [150, 104, 72]], dtype=float)
SITES = ("anterior torso", "head/neck", "lower extremity", "posterior torso", "upper extremity", "palms/soles")

# Per class: lesion RGB, second colour, radius range (fraction of the short side),
# border irregularity, border softness, and the texture drawn inside.
CLASS_LOOKS = {
    "NV": dict(
        color=(128, 82, 52), accent=(100, 62, 40), radius=(0.22, 0.32), irregular=0.04, soft=0.02, texture="network"
    ),
    "MEL": dict(
        color=(70, 42, 34), accent=(92, 104, 138), radius=(0.28, 0.40), irregular=0.12, soft=0.03, texture="blotches"
    ),
    "BCC": dict(
        color=(214, 150, 150), accent=(86, 96, 120), radius=(0.20, 0.30), irregular=0.08, soft=0.05, texture="vessels"
    ),
    "AK": dict(
        color=(196, 104, 96), accent=(238, 220, 210), radius=(0.22, 0.34), irregular=0.08, soft=0.10, texture="scales"
    ),
    "BKL": dict(
        color=(164, 116, 74), accent=(118, 80, 50), radius=(0.22, 0.34), irregular=0.06, soft=0.015, texture="stripes"
    ),
    "DF": dict(
        color=(150, 102, 70),
        accent=(236, 224, 214),
        radius=(0.12, 0.18),
        irregular=0.03,
        soft=0.04,
        texture="white_center",
    ),
    "VASC": dict(
        color=(150, 36, 70), accent=(90, 10, 40), radius=(0.16, 0.26), irregular=0.05, soft=0.015, texture="lacunae"
    ),
    "SCC": dict(
        color=(206, 128, 116), accent=(240, 228, 184), radius=(0.20, 0.32), irregular=0.10, soft=0.05, texture="keratin"
    ),
}


def images_per_class(num_images: int, min_per_class: int) -> dict[str, int]:
    """Images per class: the ISIC 2019 shares, at least `min_per_class`, summing to `num_images`."""
    total = sum(ISIC_2019_COUNTS.values())
    counts = {c: max(min_per_class, round(num_images * n / total)) for c, n in ISIC_2019_COUNTS.items()}
    counts["NV"] += num_images - sum(counts.values())  # the largest class absorbs rounding
    return counts


@dataclasses.dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class LesionRecipe:
    """Everything that stays the same across the images of one lesion (lesion_recipe draws it)."""

    label: str
    size: tuple[int, int]  # (width, height) in pixels before scaling
    skin: np.ndarray  # RGB of the skin around the lesion
    vignette: float  # darkening towards the corners
    hairs: int
    radius: float  # in units of the image's short side
    aspect: float
    harmonics: np.ndarray  # the border's wobble: amplitudes of 6 harmonics ...
    phases: np.ndarray  # ... and their phases
    color: np.ndarray  # RGB of the lesion
    pattern_seed: int  # the class's texture


def lesion_recipe(label: str, rng: np.random.Generator) -> LesionRecipe:
    """A new lesion of class `label`, drawn from `rng`."""
    look = CLASS_LOOKS[label]
    return LesionRecipe(
        label=label,
        size=REAL_SIZES[rng.integers(len(REAL_SIZES))],
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 8, 3),
        vignette=float(rng.choice([0.0, 0.55])),  # two lighting set-ups
        hairs=int(rng.choice([0, 0, 4, 9])),
        radius=rng.uniform(*look["radius"]),
        aspect=rng.uniform(0.75, 1.0),
        harmonics=rng.normal(0, look["irregular"], 6),
        phases=rng.uniform(0, 2 * np.pi, 6),
        color=np.array(look["color"], float) + rng.normal(0, 10, 3),
        pattern_seed=int(rng.integers(2**31)),
    )


def _texture(kind: str, x: np.ndarray, y: np.ndarray, r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weight in [0, 1] of the class's second colour at each pixel; x, y, r are in lesion units."""
    if kind == "network":  # pigment network: a faint regular grid
        return 0.5 * ((np.sin(x * 28) > 0.6) | (np.sin(y * 28) > 0.6))
    if kind == "blotches":  # blue-grey veil and dark blotches, off centre
        cx, cy = rng.uniform(-0.4, 0.4, 2)
        return np.clip(1.2 - 2.5 * np.hypot(x - cx, y - cy), 0, 1) * (np.sin(x * 9 + y * 5) > -0.3)
    if kind == "vessels":  # arborising vessels are drawn later; here blue-grey ovoid nests
        weight = np.zeros_like(x)
        for cx, cy in rng.uniform(-0.6, 0.6, (5, 2)):
            weight += np.hypot(x - cx, y - cy) < 0.12
        return np.clip(weight, 0, 1)
    if kind == "scales":  # scaly surface: coarse white speckle
        return (rng.random(x.shape) > 0.8) * 0.8
    if kind == "stripes":  # cerebriform ridges
        return 0.6 * (np.sin((x + 0.3 * y) * 22) > 0.2)
    if kind == "white_center":
        return np.clip(1.5 - 3.0 * r, 0, 1)
    if kind == "lacunae":  # red-blue lagoons
        weight = np.zeros_like(x)
        for cx, cy in rng.uniform(-0.65, 0.65, (9, 2)):
            weight += np.hypot(x - cx, y - cy) < 0.14
        return np.clip(weight, 0, 1)
    if kind == "keratin":  # yellow-white keratin mass in the middle
        return np.clip(1.4 - 2.2 * r, 0, 1) * (rng.random(x.shape) > 0.25)
    raise ValueError(f"unknown texture {kind!r}")


def render_image(recipe: LesionRecipe, scale: float, rng: np.random.Generator) -> Image.Image:
    """One image of the lesion in `recipe`, moved, turned and re-lit by `rng`."""
    width, height = (max(16, round(side * scale)) for side in recipe.size)
    short = min(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    # pixel coordinates in units of the short side, centred on the (moved) lesion
    centre = np.array([width, height]) / 2 + rng.normal(0, 0.05 * short, 2)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = (xs - centre[0]) / short, (ys - centre[1]) / short
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / recipe.aspect
    dist, theta = np.hypot(u, v), np.arctan2(v, u)
    k = np.arange(2, 8)[:, None, None]
    wobble = (recipe.harmonics[:, None, None] * np.cos(k * theta + recipe.phases[:, None, None])).sum(0)
    edge = recipe.radius * (1 + wobble)
    look = CLASS_LOOKS[recipe.label]
    inside = 1 / (1 + np.exp(-(edge - dist) / (look["soft"] * recipe.radius + 1e-3)))

    pattern_rng = np.random.default_rng(recipe.pattern_seed)
    accent = _texture(look["texture"], u / recipe.radius, v / recipe.radius, dist / edge, pattern_rng)
    lesion = recipe.color * (1 - accent[..., None]) + np.array(look["accent"], float) * accent[..., None]
    image = recipe.skin * (1 - inside[..., None]) + lesion * inside[..., None]

    light = 1 - recipe.vignette * np.clip(np.hypot(xs / width - 0.5, ys / height - 0.5) * 1.6, 0, 1) ** 2
    image = image * (light * rng.uniform(0.9, 1.1))[..., None] + rng.normal(0, 6, image.shape)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(picture)
    if look["texture"] == "vessels":  # thin red branching lines across the lesion
        for _ in range(4):
            start = centre + rng.normal(0, 0.1 * short, 2)
            points = [tuple(start + np.cumsum(rng.normal(0, 0.08 * short, (5, 2)), axis=0)[i]) for i in range(5)]
            draw.line([tuple(start), *points], fill=(176, 30, 40), width=max(1, short // 110))
    for _ in range(recipe.hairs):  # dark hairs cross the whole image
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        bend = rng.normal(0, 0.3 * short, 2)
        end = (x0 + rng.normal(0, width), y0 + rng.normal(0, height))
        mid = ((x0 + end[0]) / 2 + bend[0], (y0 + end[1]) / 2 + bend[1])
        draw.line([(x0, y0), mid, end], fill=(38, 28, 24), width=max(1, short // 130), joint="curve")
    return picture


def plan_sample(params: SampleParams) -> list[dict]:
    """Rows of the sample: image name, class, lesion id (or ''), metadata and its recipe."""
    rng = np.random.default_rng(params.seed)
    rows = []
    for label, count in images_per_class(params.num_images, params.min_per_class).items():
        made = 0
        while made < count:
            recipe = lesion_recipe(label, rng)
            has_id = rng.random() > 0.08  # about 8% of real rows carry no lesion id
            n_images = min(count - made, int(rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 2, 3]))) if has_id else 1
            lesion_id = f"IL_{int(rng.integers(10**7)):07d}" if has_id else ""
            age, site, sex = int(rng.integers(3, 18)) * 5, str(rng.choice(SITES)), str(rng.choice(["male", "female"]))
            for _ in range(n_images):
                rows.append(dict(label=label, lesion_id=lesion_id, age=age, site=site, sex=sex, recipe=recipe))
            made += n_images
    order = rng.permutation(len(rows))  # classes interleave across image ids, as in the real set
    rows = [rows[i] for i in order]
    for number, row in enumerate(rows):
        downsampled = row["recipe"].size[0] == 1024 and rng.random() < 0.05
        row["image"] = f"ISIC_{number:07d}" + ("_downsampled" if downsampled else "")
        row["image_seed"] = int(rng.integers(2**31))
    return rows


def write_sample(rows: list[dict], scale: float, out: Path) -> None:
    """Write the JPEGs and the two CSVs (CRLF, float one-hot, as in the ISIC release)."""
    (out / IMAGE_DIR).mkdir(parents=True)
    truth = [",".join(GROUND_TRUTH_COLUMNS)]
    meta = [",".join(METADATA_COLUMNS)]
    for row in tqdm(rows, desc="make-sample", unit="img"):
        picture = render_image(row["recipe"], scale, np.random.default_rng(row["image_seed"]))
        picture.save(out / IMAGE_DIR / f"{row['image']}.jpg", quality=90)
        one_hot = ["1.0" if c == row["label"] else "0.0" for c in CLASSES] + ["0.0"]
        truth.append(",".join([row["image"], *one_hot]))
        meta.append(f"{row['image']},{row['age']},{row['site']},{row['lesion_id']},{row['sex']}")
    (out / GROUND_TRUTH_CSV).write_bytes(("\r\n".join(truth) + "\r\n").encode())
    (out / METADATA_CSV).write_bytes(("\r\n".join(meta) + "\r\n").encode())


def lesion_images(count: int, side: int, seed: int = 0) -> Iterator[tuple[str, Image.Image]]:
    """`count` dermoscopy-like images of `side` x `side` pixels, one lesion each, the classes in
    turn: (class, image). For benchmarks and tests that need many distinct images."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = CLASSES[i % len(CLASSES)]
        recipe = dataclasses.replace(lesion_recipe(label, rng), size=(side, side))
        yield label, render_image(recipe, 1.0, rng)
