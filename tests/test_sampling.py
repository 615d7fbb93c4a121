import numpy as np
import pandas as pd
import pytest
import torch
from conftest import published_augmentation

from skinlesion.classes import CLASSES
from skinlesion.data.arrays import class_counts
from skinlesion.data.dataset import ImageArrayDataset
from skinlesion.data.isic import read_labels
from skinlesion.data.metadata import FIELDS
from skinlesion.data.prepare import assign_rows
from skinlesion.data.split import split_by_lesion
from skinlesion.resampling.kmeans import allocate, image_features, pick_within_clusters, undersample
from skinlesion.resampling.oversample import balanced_manifest, oversample_plan
from skinlesion.resampling.params import SamplingParams
from skinlesion.transforms.augment import augment, for_real_images

AUGMENT = published_augmentation(seed=5)


def _training_set(counts: dict[str, int], size: int = 32, seed: int = 0):
    """A manifest and images whose classes have two visibly different sub-types each."""
    rng = np.random.default_rng(seed)
    labels = [label for label, n in counts.items() for _ in range(n)]
    images = np.empty((len(labels), size, size, 3), np.uint8)
    for i in range(len(labels)):
        base = rng.choice([40, 200])  # two sub-types: dark and light
        images[i] = np.clip(base + rng.normal(0, 10, (size, size, 3)), 0, 255)
    manifest = pd.DataFrame(
        {
            "image": [f"ISIC_{i:07d}" for i in range(len(labels))],
            "label": labels,
            "lesion_id": "",
            "split": "train",
            "row": np.arange(len(labels)),
        }
    )
    return manifest, images


@pytest.mark.parametrize(
    "sizes, target", [([10, 20, 30], 30), ([7, 7, 7], 10), ([1, 1, 98], 50), ([5], 5), ([3, 9, 12, 1], 0)]
)
def test_allocate_is_exact_and_proportional(sizes, target):
    quota = allocate(np.array(sizes), target)
    assert quota.sum() == target
    assert (quota <= sizes).all()
    exact = np.array(sizes) * target / sum(sizes)
    assert (np.abs(quota - exact) < 1).all()


def test_pick_within_clusters_keeps_proportions():
    assignment = np.repeat([0, 1, 2], [50, 30, 20])
    chosen = pick_within_clusters(assignment, 40, seed=0)
    assert len(chosen) == len(set(chosen)) == 40
    assert np.bincount(assignment[chosen]).tolist() == [20, 12, 8]


def test_undersample_hits_targets_exactly_and_keeps_cluster_shares():
    manifest, images = _training_set({"NV": 90, "MEL": 41, "DF": 7})
    params = SamplingParams(
        majority_classes=("NV", "MEL"),
        majority_target=40,
        minority_target=10,
        undersample="kmeans",
        oversample=True,
        kmeans_clusters=4,
        seed=0,
    )
    before = manifest.copy()
    kept, info = undersample(manifest, images, params, CLASSES)
    pd.testing.assert_frame_equal(manifest, before)  # input untouched
    assert kept["label"].value_counts().to_dict() == {"NV": 40, "MEL": 40, "DF": 7}
    assert set(kept["image"]) <= set(manifest["image"])  # real images, no centroids
    for entry in info.values():
        sizes = np.bincount(entry["assignment"])
        kept_sizes = np.bincount(entry["assignment"][entry["kept"]], minlength=len(sizes))
        share = sizes * entry["kept"].sum() / sizes.sum()
        assert (np.abs(kept_sizes - share) < 1).all()


@pytest.mark.parametrize("method", ["random", "none"])
def test_random_undersampling_draws_uniformly_and_none_keeps_every_image(method):
    manifest, images = _training_set({"NV": 90, "MEL": 41, "DF": 7})
    params = SamplingParams(
        majority_classes=("NV", "MEL"),
        majority_target=40,
        minority_target=10,
        undersample=method,
        oversample=True,
        kmeans_clusters=4,
        seed=0,
    )
    kept, info = undersample(manifest, images, params, CLASSES)
    if method == "none":
        pd.testing.assert_frame_equal(kept, manifest)
        assert info == {}
    else:
        assert kept["label"].value_counts().to_dict() == {"NV": 40, "MEL": 40, "DF": 7}
        assert all(entry["assignment"].max() == 0 for entry in info.values())  # one cluster: a uniform draw
        again, _ = undersample(manifest, images, params, CLASSES)
        other, _ = undersample(manifest, images, params.model_copy(update={"seed": 1}), CLASSES)
        assert list(again["image"]) == list(kept["image"]) != list(other["image"])  # the seed decides the draw


def test_features_reduce_images_chunk_by_chunk():
    _, images = _training_set({"NV": 5}, size=64)
    features = image_features(images, np.array([4, 0, 2]), chunk=2)
    assert features.shape == (3, 16 * 16 * 3)
    assert np.allclose(features[1], images[0].reshape(16, 4, 16, 4, 3).mean(axis=(1, 3)).ravel() / 255, atol=1e-5)


def test_oversample_plan_fills_targets_from_own_class_only():
    manifest, _ = _training_set({"NV": 40, "DF": 3, "VASC": 5})
    targets = {"NV": 40, "DF": 10, "VASC": 12, "MEL": 0}
    plan = oversample_plan(manifest, targets, seed=1)
    assert plan["label"].value_counts().to_dict() == {"DF": 7, "VASC": 7}
    for label in ("DF", "VASC"):
        sources = plan.loc[plan["label"] == label, "image"]
        assert set(sources) <= set(manifest.loc[manifest["label"] == label, "image"])
        uses = sources.value_counts()
        assert uses.max() - uses.min() <= 1  # every source used about equally
    with pytest.raises(ValueError, match="class SCC has no training images"):
        oversample_plan(manifest, {"SCC": 3}, seed=1)


def test_balanced_set_is_deterministic_and_copies_only_training_images(tmp_path):
    manifest, images = _training_set({"NV": 12, "DF": 3})
    balanced = balanced_manifest(manifest, oversample_plan(manifest, {"NV": 12, "DF": 9}, seed=1))
    assert balanced["label"].value_counts().to_dict() == {"NV": 12, "DF": 9}
    copies = balanced[balanced["augmented"]]
    assert set(copies["source_image"]) <= set(manifest.loc[manifest["label"] == "DF", "image"])
    assert copies["image"].is_unique and not set(copies["image"]) & set(manifest["image"])

    assert (copies["row"] == manifest.set_index("image").loc[copies["source_image"], "row"].to_numpy()).all()


def test_copies_are_drawn_afresh_each_epoch_deterministically_for_the_seed(tmp_path):
    """The train stage's dataset: a copy is its source augmented with the copies' transform,
    a new draw each epoch (each reseed), the same draw for the same seed; with
    real_images: light, real images get the original code's transform, not the copies'."""
    manifest, images = _training_set({"NV": 6, "DF": 2})
    balanced = balanced_manifest(manifest, oversample_plan(manifest, {"NV": 6, "DF": 6}, seed=1))
    np.save(tmp_path / "train.npy", images)
    light = AUGMENT.model_copy(update={"real_images": "light"})
    assert for_real_images(AUGMENT) is AUGMENT
    assert for_real_images(light).rotation_range == 10 and for_real_images(light).crop_scale == (0.08, 1.0)
    transform, copy_transform = augment(params=for_real_images(light), size=32), augment(params=light, size=32)
    dataset = ImageArrayDataset(tmp_path, balanced, CLASSES, transform, copy_transform)

    def epoch(seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])

    first, again, next_epoch = epoch(0), epoch(0), epoch(1)
    assert np.array_equal(first, again) and len(first) == 12
    copies = balanced["augmented"].to_numpy()
    assert not np.array_equal(first[copies], next_epoch[copies])
    for i in np.flatnonzero(copies):  # a copy is drawn from its source, with the copies' transform
        source = torch.from_numpy(images[balanced["row"][i]]).permute(2, 0, 1)
        torch.manual_seed(i)
        expected = copy_transform(source)
        torch.manual_seed(i)
        assert torch.equal(dataset[i][0], expected) and dataset[i][1] == CLASSES.index("DF")
    assert dataset.copy_transform is copy_transform and dataset.transform is transform


def test_published_targets_on_the_real_training_split(shared_data):
    """The real ISIC 2019 training split (labels; pixels synthetic) resamples to the published
    table, and every image and copy keeps its (source) image's metadata, gaps as gaps."""
    labels = read_labels(shared_data / "isic2019-labels")
    split = split_by_lesion(labels, val_fraction=0.15, test_fraction=0.15, seed=42)
    manifest = assign_rows(labels, split).query("split == 'train'").reset_index(drop=True)
    images = np.random.default_rng(0).integers(0, 256, (len(manifest), 16, 16, 3), dtype=np.uint8)
    params = SamplingParams(
        majority_classes=("NV", "MEL"),
        majority_target=3500,
        minority_target=1500,
        undersample="kmeans",
        oversample=True,
        kmeans_clusters=8,
        seed=42,
    )
    before = class_counts(manifest["label"], CLASSES)
    assert before["NV"] > 3500 and before["BCC"] > 1500 and before["MEL"] < 3500 and before["DF"] < 1500
    kept, _ = undersample(manifest, images, params, CLASSES)
    balanced = balanced_manifest(kept, oversample_plan(kept, params.targets(CLASSES), seed=42))
    assert class_counts(balanced["label"], CLASSES) == {
        "MEL": 3500,
        "NV": 3500,
        "BCC": 1500,
        "AK": 1500,
        "BKL": 1500,
        "DF": 1500,
        "VASC": 1500,
        "SCC": 1500,
    }
    official = labels.set_index("image").loc[balanced["source_image"], list(FIELDS)].reset_index(drop=True)
    assert balanced[list(FIELDS)].equals(official)
    assert balanced["augmented"].any() and (balanced["anatom_site_general"] == "").any()
    assert set(balanced.loc[balanced["augmented"], "source_image"]) <= set(manifest["image"])
