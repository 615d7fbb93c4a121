"""The card's sections, each a pure function of CardInputs, and the card itself (build_card):
what the model is and is not for, its data, training settings, results, external test sets when
evaluate.external names some, calibration, unknown score, cross-validation and subgroups when
eval.json has them, Grad-CAM examples, limitations stated from the numbers, and how to reproduce
it."""

from __future__ import annotations

from pathlib import Path

from skinlesion.card.blocks import Block, Bullets, Card, Code, Picture, Section, Table, listing, number, param_value
from skinlesion.card.figures import before_temperature, class_indices, confusion_figure, reliability_figure, roc_figure
from skinlesion.card.inputs import CardInputs, ModelCardRun
from skinlesion.evaluation.metrics import confusion
from skinlesion.evaluation.report_schema import ClassFigures, CrossValidation, FoldFigures, SubgroupFigures, TestReport
from skinlesion.model.unknown import KEEP_KNOWN
from skinlesion.resampling.params import SamplingParams

# the sections whose keys the card compares with the recipe's
COMPARED = ("prepare", "sampling", "augmentation", "model", "training", "evaluate")
# a class with fewer test images than this has figures that rest on a handful of images
FEW_TEST_IMAGES = 10
# a 95% interval of balanced accuracy wider than this cannot tell most settings apart
WIDE_INTERVAL = 0.2


def intended_use_section(inputs: CardInputs) -> Section:
    """What the model is and is not for."""
    classes = ", ".join(inputs.model.classes)
    blocks = [
        "For research: reproducing and comparing training settings for dermoscopy image "
        f"classification into ISIC 2019's {len(inputs.model.classes)} classes ({classes}).",
        Bullets(
            (
                "Not for diagnosis, screening or any decision about a person's care: it is not a medical "
                "device, has not been validated on any clinic's patients, and a class probability is not a "
                "risk of disease.",
                "Input: one dermoscopic image of one skin lesion. A lesion of none of these classes still gets "
                "one of them; the unknown score below flags some such images.",
            )
        ),
    ]
    if inputs.synthetic:
        blocks.append("Trained on synthetic images: this model shows the pipeline at work and knows no real lesion.")
    return Section("Intended use", tuple(blocks))


def model_section(inputs: CardInputs) -> Section:
    """What the model file holds: architecture, input, output, epoch, temperature."""
    model, params = inputs.model, inputs.params
    yes_no = {True: "yes", False: "no"}
    if model.is_ensemble:
        kind = f"the ensemble of {len(model.members)} fold models (class probabilities averaged), each a {model.arch}"
    else:
        kind = f"one {model.arch}"
    epochs = ", ".join(number(member.epoch) for member in model.per_model)
    val = ", ".join(number(member.val_balanced_accuracy) for member in model.per_model)
    calibration = params.training.calibration
    temperatures = [member.temperature for member in model.per_model]
    if any(t != 1.0 for t in temperatures):
        temperature = ", ".join(number(t) for t in temperatures) + ", fitted on validation"
    else:
        temperature = "none"
    # where the weights came from, as the model file records it (files from before it did: the param)
    weights = model.per_model[0].weights_source or f"`model.weights: {params.model.weights}` (source not recorded)"
    items = (
        f"File: `{inputs.model_file}`: {kind}.",
        f"Pretrained weights: {weights}.",
        f"Input: {model.image_size} x {model.image_size} px RGB, normalised with mean {list(model.mean)} and std "
        f"{list(model.std)} per channel (the backbone's pretrained config); dermoscope frame cropped: "
        f"{yes_no[model.crop_border]}; colour constancy (Shades of Gray): {yes_no[model.color_constancy]}; "
        f"metadata: {', '.join(model.metadata) or 'none'}.",
        f"Output: a probability for each class, in the order {', '.join(model.classes)}.",
        f"Best epoch on validation (counted from 0; `training.epochs: {params.training.epochs}`): {epochs}; "
        f"validation balanced accuracy {val}.",
        f"Temperature: {temperature} (`training.calibration: {calibration}`).",
    )
    return Section("Model", (Bullets(items),))


def data_section(inputs: CardInputs) -> Section:
    """Source, version, images per class and split, grouping, folds, resampling."""
    params, counts = inputs.params, inputs.data_counts
    if inputs.synthetic:
        source = f"The synthetic sample (`{params.data.root}`), written by make-sample in the ISIC 2019 file format."
    else:
        source = (
            f"The ISIC 2019 training data (`data.root`: `{params.data.root}`). Its licence, CC BY-NC 4.0, allows "
            "non-commercial use with attribution: use this model within those terms (the project's MIT licence "
            "covers its code, not the data or the models trained on it)."
        )
    version = (
        f"Data version: md5 `{inputs.data_version}` as DVC hashes `{params.data.root}` (dvc.lock, prepare-split)."
        if inputs.data_version
        else "Data version: not recorded (no prepare-split entry in dvc.lock)."
    )
    table = Table(
        ("class", "train", "val", "test"),
        tuple(
            (name, *(str(counts[split].get(name, 0)) for split in ("train", "val", "test")))
            for name in [*inputs.model.classes, "total"]
        ),
    )
    return Section(
        "Data",
        (
            source + " " + version,
            "Images per class and split:",
            table,
            f"Images skipped as unreadable: {counts.get('skipped', 0)}.",
            Bullets((lesion_grouping(), folds_text(params.cv.folds), resampling_text(params.sampling))),
        ),
    )


def lesion_grouping() -> str:
    """How the splits keep the images of one lesion together."""
    return (
        "Split by lesion: every image of one lesion (ISIC's `lesion_id`; an image without one is its own "
        "group) lies in one split, stratified by class; validation and test keep the true class mix, and the "
        "95% interval resamples lesions, not images."
    )


def folds_text(folds: tuple[int, ...]) -> str:
    """What `cv.folds` made of train+val."""
    if len(folds) == 1:
        return "Folds (`cv.folds`): [0], the single train/val split: trained on train, the epoch chosen on val."
    return (
        f"Folds (`cv.folds`): {list(folds)}: {len(folds)}-fold cross-validation over train+val, grouped by lesion; "
        "each fold model chose its epoch on its own validation fold."
    )


def resampling_text(sampling: SamplingParams) -> str:
    """The per-class targets of the resampling stages, and how each stage meets them."""
    cut = {
        "kmeans": f"cut to it by K-Means ({sampling.kmeans_clusters} clusters, images drawn within clusters)",
        "random": "cut to it by a uniform random draw",
        "none": "kept whole (`sampling.undersample: none`)",
    }[sampling.undersample]
    fill = "filled to it with augmented copies"
    if not sampling.oversample:
        fill = "left as it is (`sampling.oversample: false`)"
    return (
        f"Resampling, of the training images only: targets of {sampling.majority_target} images for "
        f"{', '.join(sampling.majority_classes)} and {sampling.minority_target} for every other class; a class "
        f"above its target is {cut}, a class below it {fill}."
    )


def recipe_differences(params: ModelCardRun, recipe: ModelCardRun) -> list[tuple[str, str, str]]:
    """(key, this model's value, the recipe's) for each key of COMPARED that differs."""
    ours, theirs = params.model_dump(mode="json"), recipe.model_dump(mode="json")
    return [
        (f"{section}.{key}", param_value(value), param_value(theirs[section][key]))
        for section in COMPARED
        for key, value in ours[section].items()
        if value != theirs[section][key]
    ]


def training_section(inputs: CardInputs) -> Section:
    """The params that differ from the recipe's, as a table."""
    differences = recipe_differences(inputs.params, inputs.recipe)
    intro = (
        f"The recipe: params.yaml with `{inputs.recipe_file}` applied (the published E2E-DenseNetSkin settings "
        f"at full scale). Of the sections {', '.join(COMPARED)}, "
    )
    if not differences:
        return Section("Training settings", (intro + "every key is as the recipe's.",))
    table = Table(("key", "this model", "recipe"), tuple(differences))
    return Section("Training settings", (intro + "these keys differ; the rest are as the recipe's:", table))


def results_section(inputs: CardInputs) -> Section:
    """The headline with its interval, and the per-class table."""
    test = inputs.evaluation.test
    headline = (
        f"Balanced accuracy on the test split: {number(test.balanced_accuracy)} (95% interval {interval(test)}, "
        f"lesions resampled) on {test.images} images; accuracy {number(test.accuracy)}, macro F1 "
        f"{number(test.macro_f1)}, macro AUC {number(test.macro_auc)}; test-time augmentation: "
        f"{test.tta}. The test split comes from the same source as the training images; "
        + (
            "the section External test sets gives the figures on images from elsewhere."
            if inputs.external
            else "no external test set is named (`evaluate.external`), so no figure here is of images from elsewhere."
        )
    )
    rows = tuple(
        (name, number(f.precision), number(f.recall), number(f.f1), number(f.auc), str(f.support))
        for name, f in test.per_class.items()
    )
    table = Table(("class", "precision", "recall", "F1", "AUC (one-vs-rest)", "test images"), rows)
    return Section("Results", (headline, table))


def interval(report: TestReport | SubgroupFigures) -> str:
    """The 95% interval of balanced accuracy of a test report or a subgroup, as "low to high"."""
    return f"{number(report.balanced_accuracy_ci95_low)} to {number(report.balanced_accuracy_ci95_high)}"


def external_section(inputs: CardInputs) -> Section:
    """Each external test set's figures beside the test split's, and recall per class on each."""
    test, external = inputs.evaluation.test, inputs.external
    text = (
        "Test sets from elsewhere (`evaluate.external`), scored by this model as the test split is. An image that "
        "is also one of the pipeline's images (same ISIC id, same lesion id or the same decoded pixels) is left "
        "out and counted; the intervals resample lesions."
    )
    counts = {"test split": ("", "")} | {
        name: (f"{report.overlap_excluded.total} of {report.images_in_folder}", str(report.skipped))
        for name, report in external.items()
    }
    reports: dict[str, TestReport] = {"test split": test, **external}
    rows = tuple(
        (name, str(report.images), *counts[name], number(report.balanced_accuracy), interval(report))
        + (number(report.accuracy), number(report.macro_auc), number(report.ece))
        for name, report in reports.items()
    )
    header = ("set", "images scored", "left out", "unreadable", "balanced accuracy", "95% interval", "accuracy")
    figures = Table((*header, "macro AUC", "ECE"), rows)
    recalls = Table(
        ("class", *reports),
        tuple(
            (name, *(recall_cell(report.per_class.get(name)) for report in reports.values()))
            for name in inputs.model.classes
        ),
    )
    return Section("External test sets", (text, figures, "Recall per class (images of the class):", recalls))


def recall_cell(figures: ClassFigures | None) -> str:
    """A class's recall and images in one report, "n/a (0)" for a class it lacks."""
    if figures is None or not figures.support:
        return "n/a (0)"
    return f"{number(figures.recall)} ({figures.support})"


def confusion_section(inputs: CardInputs) -> Section:
    """The confusion counts of the test predictions, row = true class."""
    classes = list(inputs.model.classes)
    y_true = class_indices(inputs.predictions, "label", classes)
    y_pred = class_indices(inputs.predictions, "predicted", classes)
    matrix = confusion(y_true, y_pred, len(classes))
    table = Table(("true \\ predicted", *classes), tuple((name, *map(str, row)) for name, row in zip(classes, matrix)))
    caption = "Confusion matrix of the test split: test images per true class (row) and predicted class (column)."
    return Section("Confusion matrix", (Picture(caption, confusion_figure(matrix, classes), table),))


def roc_section(inputs: CardInputs) -> Section:
    """The one-vs-rest ROC curves, each with its AUC."""
    auc = {name: figures.auc for name, figures in inputs.evaluation.test.per_class.items()}
    caption = "ROC curves, one class against the rest, on the test split (AUC per class in the table above)."
    return Section("ROC", (Picture(caption, roc_figure(inputs.curves.roc, auc)),))


def calibration_section(inputs: CardInputs) -> Section:
    """The ECE before and after the temperature, and the reliability diagram. Before it can be
    had for a single model only: an ensemble averages probabilities each at its own temperature."""
    bins = inputs.params.evaluate.calibration_bins
    temperatures = [member.temperature for member in inputs.model.per_model]
    test = inputs.evaluation.test
    after_ece = test.ece
    text = f"Expected calibration error ({bins} equal-width confidence bins): "
    before = None
    if all(t == 1.0 for t in temperatures):
        text += f"{number(after_ece)}; the model has no temperature, so there is no before and after."
    elif len(temperatures) > 1:
        text += f"{number(after_ece)} after the fold models' temperatures; before them it cannot be had from "
        text += "the averaged probabilities."
    elif test.tta != "none":
        text += f"{number(after_ece)} after the temperature; before it cannot be had from probabilities "
        text += f"averaged over the test-time augmentation's views (`evaluate.tta: {test.tta}`)."
    else:
        before_ece, before = before_temperature(inputs.predictions, list(inputs.model.classes), temperatures[0], bins)
        text += f"{number(before_ece)} before the temperature, {number(after_ece)} after it (T = "
        text += f"{number(temperatures[0])}; before: recomputed from the test predictions)."
    after = inputs.curves.reliability
    table = Table(
        ("mean confidence", "accuracy", "test images"),
        tuple((number(row.confidence), number(row.accuracy), str(row.count)) for row in after.itertuples()),
    )
    caption = "Reliability diagram of the test split: accuracy against mean confidence per confidence bin."
    return Section("Calibration", (text, Picture(caption, reliability_figure(after, before), table)))


def unknown_section(inputs: CardInputs) -> Section:
    """The unknown score's threshold and the share of test images it calls unknown."""
    threshold, rate = inputs.model.unknown_threshold, inputs.evaluation.test.unknown_rate
    if threshold is None:
        return Section("Unknown score", ("The model file holds no unknown threshold (written before it existed).",))
    source = "the out-of-fold predictions of train+val" if inputs.model.is_ensemble else "the validation split"
    called = "n/a" if rate is None else f"{rate:.1%}"
    text = (
        f"The unknown score of an image is one minus its top class probability; above {number(threshold)} the "
        f"image is called unknown. The threshold keeps {KEEP_KNOWN:.0%} of the images of {source} known. On the "
        f"test split, all of known classes, it calls {called} of the images unknown (`test.unknown_rate`)."
    )
    return Section("Unknown score", (text,))


def cv_section(cv: CrossValidation) -> Section:
    """eval.json's `cv`: each fold model's test figures, their mean and spread, the out-of-fold estimate."""
    header = ("fold", "best epoch", "val balanced accuracy", *(f"test {name}" for name in FoldFigures.model_fields))
    rows = [
        (fold, number(entry.epoch), number(entry.val_balanced_accuracy), *fold_cells(entry.test))
        for fold, entry in cv.folds.items()
    ]
    rows += [
        (label, "", "", *fold_cells(figures))
        for label, figures in (("mean", cv.test_mean), ("standard deviation", cv.test_std))
    ]
    oof = cv.out_of_fold
    text = (
        f"Out-of-fold estimate on train+val (each image predicted by the fold model that validated on it): "
        f"balanced accuracy {number(oof.balanced_accuracy)}, accuracy {number(oof.accuracy)}, {oof.images} images."
    )
    return Section("Cross-validation", (Table(header, tuple(rows)), text))


def fold_cells(figures: FoldFigures) -> tuple[str, ...]:
    """The fold figures as table cells, in FoldFigures' order."""
    return tuple(number(value) for _, value in figures)


ATTRIBUTES = {"age": "age band", "sex": "sex", "site": "anatomical site"}


def subgroups_section(test: TestReport) -> Section:
    """eval.json's `test.subgroups`: a table per attribute, each group's images and balanced
    accuracy with its interval, or too small to score."""
    subgroups = test.subgroups
    text = (
        f"Balanced accuracy by the metadata of the test images (overall {number(test.balanced_accuracy)}); a "
        f'group with fewer than {subgroups.min_images} images is counted, not scored. "below" marks a group '
        "whose whole 95% interval lies below the overall figure."
    )
    blocks: list[Block] = [text]
    for attribute, groups in subgroups.by_attribute().items():
        rows = []
        for group, entry in groups.items():
            if not entry.images:
                continue
            if entry.too_small:
                rows.append((group, str(entry.images), "too small", "", ""))
                continue
            below = "below" if entry.below_overall else ""
            rows.append((group, str(entry.images), number(entry.balanced_accuracy), interval(entry), below))
        blocks.append(
            Table((ATTRIBUTES[attribute], "test images", "balanced accuracy", "95% interval", ""), tuple(rows))
        )
    return Section("Subgroups", tuple(blocks))


def gradcam_section(inputs: CardInputs) -> Section:
    """The first Grad-CAM overlays, as pictures."""
    if not inputs.gradcam:
        return Section("Grad-CAM examples", ("The gradcam stage explained no test image (`gradcam` params).",))
    intro = (
        f"The first {len(inputs.gradcam)} Grad-CAM overlays by name: each shows a test image, the map for the "
        "predicted class and, when the prediction is wrong, the map for the true class."
    )
    pictures = tuple(Picture(panel_caption(name), png) for name, png in inputs.gradcam.items())
    return Section("Grad-CAM examples", (intro, *pictures))


def panel_caption(name: str) -> str:
    """ "AK_wrong_ISIC_0000749.png" -> "AK, wrongly classified: ISIC_0000749"."""
    parts = Path(name).stem.split("_", 2)
    if len(parts) == 3 and parts[1] in ("correct", "wrong"):
        return f"{parts[0]}, {'rightly' if parts[1] == 'correct' else 'wrongly'} classified: {parts[2]}"
    return Path(name).stem


def limitations(inputs: CardInputs) -> list[str]:
    """What the numbers say the model cannot be trusted for."""
    test = inputs.evaluation.test
    found = []
    if inputs.synthetic:
        found.append("Synthetic data: trained and tested on synthetic images; its figures say nothing of real lesions.")
    if inputs.params.model.weights == "none":
        found.append("No pretrained weights (`model.weights: none`): trained from a random initialisation.")
    few = {name: f.support for name, f in test.per_class.items() if f.support < FEW_TEST_IMAGES}
    if few:
        found.append(
            f"Fewer than {FEW_TEST_IMAGES} test images: {listing(few)}; their precision, recall and AUC rest on "
            "a handful of images."
        )
    low, high = test.balanced_accuracy_ci95_low, test.balanced_accuracy_ci95_high
    if high - low > WIDE_INTERVAL:
        found.append(
            f"Wide interval: the 95% interval of balanced accuracy is {number(high - low)} wide ({number(low)} to "
            f"{number(high)}), wider than {WIDE_INTERVAL}: this test split cannot tell apart settings that differ "
            "by less."
        )
    by_attribute = test.subgroups.by_attribute() if test.subgroups else {}
    below = [
        f"{attribute} {group}"
        for attribute, groups in by_attribute.items()
        for group, entry in groups.items()
        if entry.below_overall
    ]
    if below:
        found.append(
            f"Possibly worse for some patients: the 95% interval lies wholly below the overall figure for "
            f"{', '.join(below)} (one of several groups checked, and a group's class mix differs from the whole's: "
            "a lead to check on more images)."
        )
    worse = [
        f"{name} ({number(report.balanced_accuracy)}, interval {interval(report)})"
        for name, report in inputs.external.items()
        if report.balanced_accuracy_ci95_high < test.balanced_accuracy
    ]
    if worse:
        found.append(
            f"Worse on images from elsewhere: the 95% interval of balanced accuracy lies wholly below the test "
            f"split's {number(test.balanced_accuracy)} on {', '.join(worse)}; the test split, from the training "
            "images' source, overstates what to expect of other sources."
        )
    missed = [name for name, f in test.per_class.items() if f.support and f.recall == 0]
    if missed:
        found.append(f"Never recognised on the test split (recall 0): {', '.join(missed)}.")
    return found


def limitations_section(inputs: CardInputs) -> Section:
    """limitations() as a list, or what was checked when there are none."""
    found = limitations(inputs)
    if not found:
        checked = (
            f"synthetic data, no pretrained weights, classes with fewer than {FEW_TEST_IMAGES} test images, a 95% "
            f"interval wider than {WIDE_INTERVAL}, subgroups below the overall figure, external test sets below the "
            "test split, classes never recognised"
        )
        return Section("Limitations", (f"The numbers show none of those this card checks for ({checked}).",))
    return Section("Limitations", (Bullets(tuple(found)),))


def reproduce_section(inputs: CardInputs) -> Section:
    """Where the code, params and data hashes that made the model are, and the command. The
    card names no git revision of its own: it is built before the commit that records it, and
    its bytes must not depend on the state of git, which DVC does not track."""
    where = (
        "The git commit whose `dvc.lock` records this card (its md5 under the `model-card` stage) holds the "
        "code, the params and the hashes of every input and output that made it."
    )
    commands = Code(
        "git log -1 --format=%H -S <md5 of this card> -- dvc.lock   # that commit\n"
        "git checkout <commit> && dvc repro                          # every stage whose inputs changed; this card last"
    )
    params = (
        f"Params: `params.yaml` at that commit (the keys that differ from the recipe are under Training "
        f"settings); the data: `{inputs.params.data.root}` at the md5 under Data. With access to the DVC remote "
        "the run was pushed to, `dvc pull` fetches the model instead of training it again."
    )
    return Section("How to reproduce", (where, commands, params))


def build_card(inputs: CardInputs) -> Card:
    """The card's sections, in reading order; external test sets only where evaluate.external names
    some, cross-validation and subgroups only where eval.json has them."""
    evaluation = inputs.evaluation
    sections = [
        intended_use_section(inputs),
        model_section(inputs),
        data_section(inputs),
        training_section(inputs),
        results_section(inputs),
        *([external_section(inputs)] if inputs.external else []),
        confusion_section(inputs),
        roc_section(inputs),
        calibration_section(inputs),
        unknown_section(inputs),
    ]
    if evaluation.cv is not None:
        sections.append(cv_section(evaluation.cv))
    if evaluation.test.subgroups is not None:
        sections.append(subgroups_section(evaluation.test))
    sections += [
        gradcam_section(inputs),
        limitations_section(inputs),
        reproduce_section(inputs),
    ]
    test = evaluation.test
    data = "the synthetic sample" if inputs.synthetic else "ISIC 2019"
    summary = (
        f"`{inputs.model_file}`: {inputs.model.arch} trained on {data}; balanced accuracy "
        f"{number(test.balanced_accuracy)} on {test.images} test images. For research, not diagnosis."
    )
    return Card(f"Model card: {inputs.model.arch} skin-lesion classifier", summary, tuple(sections))
