"""What evaluate writes to metrics/eval.json (EvalReport) and evaluate-external to
metrics/external/NAME.json (ExternalReport), as typed, frozen records.

Evaluate builds them and writes them with `write`; the model card reads them back with
`read`; the outputs reference (tools/docs_reference.py) lists their keys from the fields'
descriptions. The field order is the order of the keys in the file, which `dvc metrics diff`
compares with earlier runs, so a field is only ever added at the place its key is written. A
field made with `field(optional=True)` is left out of the file when it is None (the unknown
rate of a model without an unknown threshold); any other None is written as null (the AUC of
a class without test images). `keys` names the varying keys of a mapping (classes, groups,
folds) as the reference shows them. No torch here: the card and the docs tool read these
without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skinlesion.atomic import write_json
from skinlesion.errors import DataError
from skinlesion.files import read_json
from skinlesion.model.info import TTA


def _is_none(value: Any) -> bool:
    return value is None


def field(description: str, *, optional: bool = False, keys: str | None = None, shown_as: str | None = None) -> Any:
    """A described field. `optional`: None by default and then not written. `keys`: how the
    outputs reference names each key of this mapping (`<CLASS>`), or, for a record of a few
    figures, each of its fields in one row (`<figure>`). `shown_as`: the field's own name there,
    where several fields of one kind share their rows (`<attribute>` for age, sex and site)."""
    extra = {name: value for name, value in (("keys", keys), ("shown_as", shown_as)) if value}
    defaults = {"default": None, "exclude_if": _is_none} if optional else {}
    return Field(description=description, json_schema_extra=extra or None, **defaults)


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "the top level"


class Record(BaseModel):
    """A part of a report: every key required unless optional, no other key, nothing coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Report(Record):
    """A whole report file."""

    @classmethod
    def read(cls, path: Path) -> Self:
        """The report in the JSON file `path`; a DataError names the file and the keys that are
        missing or wrong."""
        data = read_json(path)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            missing = [_dotted(e["loc"]) for e in error.errors() if e["type"] == "missing"]
            wrong = [f"{_dotted(e['loc'])}: {e['msg']}" for e in error.errors() if e["type"] != "missing"]
            problems = ([f"missing {missing}"] if missing else []) + wrong
            raise DataError(f"{path}: {'; '.join(problems)}") from None

    def write(self, path: Path) -> None:
        """The report as evaluate writes it: indented JSON in field order, atomically."""
        write_json(path, self.model_dump())


class ClassFigures(Record):
    """One class against the rest on the test images."""

    precision: float = field("share of the images predicted as the class that are of it")
    recall: float = field("share of the class's images predicted as it (sensitivity)")
    specificity: float = field("share of the other classes' images not predicted as it")
    f1: float = field("harmonic mean of precision and recall")
    auc: float | None = field("one-vs-rest ROC AUC (null when the test split has no image of the class)")
    support: int = field("test images of the class")


class SubgroupFigures(Record):
    """One group of patients (an age band, a sex, a site); scored only when not too small."""

    images: int = field(
        "test images of the subgroup: by `age` (`under_30`, `30_to_60`, `over_60`, `unknown`), `sex` and "
        "anatomical `site` (ISIC's values, `unknown` where the metadata is empty)"
    )
    too_small: bool = field("true when the subgroup has fewer images than `min_images`: counted, not scored")
    balanced_accuracy: float | None = field("the subgroup's balanced accuracy (a scored subgroup)", optional=True)
    balanced_accuracy_ci95_low: float | None = field(
        "its 95% lesion-bootstrap interval, as the headline's", optional=True
    )
    balanced_accuracy_ci95_high: float | None = field("upper end of that interval", optional=True)
    below_overall: bool | None = field(
        "true when the whole interval lies below `test.balanced_accuracy`: the model does worse for this group",
        optional=True,
    )
    recall: dict[str, float] | None = field(
        "recall of each class the subgroup has images of", optional=True, keys="<CLASS>"
    )


class Subgroups(Record):
    """The test figures by the metadata of the images (skinlesion.evaluation.subgroups)."""

    min_images: int = field("fewest test images a subgroup needs to be scored (`evaluate.subgroup_min_images`)")
    age: dict[str, SubgroupFigures] = field(
        "by age band: under_30, 30_to_60, over_60, unknown", keys="<group>", shown_as="<attribute>"
    )
    sex: dict[str, SubgroupFigures] = field("by sex, unknown last", keys="<group>", shown_as="<attribute>")
    site: dict[str, SubgroupFigures] = field("by anatomical site, unknown last", keys="<group>", shown_as="<attribute>")

    def by_attribute(self) -> dict[str, dict[str, SubgroupFigures]]:
        """Each attribute's groups: age, sex, site."""
        return {"age": self.age, "sex": self.sex, "site": self.site}


class TestReport(Record):
    """The figures of a model on a test set: eval.json's `test`."""

    __test__ = False  # not a pytest test class

    balanced_accuracy: float = field(
        "the headline: mean recall over the classes present in the test split (ISIC's official metric); chance is 1/8"
    )
    balanced_accuracy_ci95_low: float = field(
        "lower end of the 95% bootstrap interval of balanced accuracy: the test split's lesions resampled "
        "`evaluate.bootstrap_resamples` times (seed `evaluate.seed`); an image without a lesion id is its own lesion"
    )
    balanced_accuracy_ci95_high: float = field("upper end of that interval")
    accuracy: float = field("share of test images whose top class is their label")
    macro_f1: float = field("mean of the per-class F1")
    weighted_f1: float = field("per-class F1 weighted by each class's test images")
    macro_auc: float | None = field("mean one-vs-rest ROC AUC over the classes that have test images")
    ece: float = field(
        "expected calibration error: the test images binned by top-class probability into "
        "`evaluate.calibration_bins` equal-width bins; the sum over bins of (share of images in the bin) x "
        "|accuracy - mean confidence|. 0 is perfect calibration. The bins are `eval/curves/reliability.csv` "
        "(empty bins left out). After the model's temperature, when training fitted one"
    )
    images: int = field("test images scored")
    per_class: dict[str, ClassFigures] = field("each class of the model, in its order", keys="<CLASS>")
    subgroups: Subgroups | None = field("by age band, sex and anatomical site", optional=True)
    loss: float = field(
        "mean cross-entropy of the reported probabilities (after temperature and TTA; for the ensemble, "
        "of the averaged probabilities)"
    )
    tta: TTA = field("the test-time augmentation used (`evaluate.tta`)")
    unknown_rate: float | None = field(
        "share of test images, all of known classes, whose unknown score (one minus the top class probability) "
        "is above the model's unknown threshold: the share an ISIC submission would call `UNK` wrongly",
        optional=True,
    )


METADATA = "whether the model takes age, sex and site (`model.use_metadata`)"
UNKNOWN_THRESHOLD = (
    "the unknown score above which an image is called unknown: the score that keeps 95% of validation images "
    "known (with folds: of the out-of-fold predictions)"
)


class SingleModel(Record):
    """eval.json's `model` for one fold's model."""

    epoch: int | None = field("one fold: the kept epoch, counted from 0 (the best validation balanced accuracy)")
    val_balanced_accuracy: float | None = field("one fold: the kept epoch's validation balanced accuracy")
    temperature: float = field("one fold: the temperature dividing the logits (1.0 without `training.calibration`)")
    metadata: bool = field(METADATA)
    unknown_threshold: float | None = field(UNKNOWN_THRESHOLD, optional=True)


class FoldEnsemble(Record):
    """eval.json's `model` for the fold models' ensemble."""

    folds: int = field("several folds: how many fold models the ensemble averages")
    metadata: bool = field(METADATA)
    unknown_threshold: float | None = field(UNKNOWN_THRESHOLD, optional=True)


class FoldFigures(Record):
    """The figures reported for each fold model on the test split, and their mean and spread."""

    balanced_accuracy: float | None = field("as `test.balanced_accuracy`")
    accuracy: float | None = field("as `test.accuracy`")
    macro_f1: float | None = field("as `test.macro_f1`")
    macro_auc: float | None = field("as `test.macro_auc`")
    ece: float | None = field("as `test.ece`")

    @classmethod
    def of(cls, figures: dict[str, Any]) -> FoldFigures:
        """These figures of a classification_report (skinlesion.evaluation.metrics)."""
        return cls(**{name: figures[name] for name in cls.model_fields})


class FoldReport(Record):
    """One fold model's figures."""

    test: FoldFigures = field("several folds: fold k's own model on the test split", keys="<figure>")
    epoch: int | None = field("several folds: fold k's kept epoch")
    val_balanced_accuracy: float | None = field(
        "several folds: fold k's kept epoch's balanced accuracy on its validation rows"
    )


class OutOfFold(Record):
    """The ensemble stage's estimate on train+val (skinlesion.evaluation.cv.out_of_fold_figures)."""

    images: int = field(
        "several folds: train+val images in the out-of-fold estimate (each predicted by the fold model that "
        "validated on it; no test image)"
    )
    balanced_accuracy: float = field("several folds: the out-of-fold balanced accuracy")
    accuracy: float = field("several folds: the out-of-fold accuracy")


class CrossValidation(Record):
    """eval.json's `cv`, for the fold models' ensemble (skinlesion.evaluation.cv)."""

    folds: dict[str, FoldReport] = field("each fold model, by fold", keys="<k>")
    test_mean: FoldFigures = field("several folds: the mean over the fold models", keys="<figure>")
    test_std: FoldFigures = field(
        "several folds: the sample standard deviation over the fold models (null with one)", keys="<figure>"
    )
    out_of_fold: OutOfFold = field("the out-of-fold estimate")


class EvalReport(Report):
    """metrics/eval.json."""

    test: TestReport = field("the test split's figures (the ensemble's with several folds)")
    model: SingleModel | FoldEnsemble = field("what was tested")
    cv: CrossValidation | None = field("the fold models' own figures, for their ensemble", optional=True)


class OverlapExcluded(Record):
    """An external set's images left out because the pipeline's data holds them, per guard
    (skinlesion.data.external.GUARDS)."""

    isic_id: int = field("the same ISIC id")
    lesion_id: int = field("the same lesion id")
    pixels: int = field("the same decoded pixels")
    total: int = field("left out by any guard")


class ExternalCounts(Record):
    """An external set's own counts (prepare-external's summary.json)."""

    images_in_folder: int = field("images in the set's folder")
    overlap_excluded: OverlapExcluded = field("images left out as the pipeline's own")
    skipped: int = field("images that could not be read")


# pydantic orders the fields of several bases from the last base to the first: the counts, then the test figures
class ExternalReport(TestReport, Report, ExternalCounts):
    """metrics/external/NAME.json: an external set's counts, then its figures as eval.json's `test`."""

    @classmethod
    def of(cls, counts: ExternalCounts, test: TestReport) -> ExternalReport:
        """The report of the set with `counts` whose figures are `test`."""
        return cls(**dict(counts), **dict(test))
