"""The params section only the train stage reads, `training`, and the keys of other sections it
reads too (TrainRun); the `model` section's schema sits beside the model's code."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from skinlesion.config import Section, View
from skinlesion.model.names import Device
from skinlesion.model.params import ModelParams
from skinlesion.transforms.params import AugmentationParams


class TrainingParams(Section):
    batch_size: int = Field(gt=0, description="images per step, of all processes together")
    epochs: int = Field(
        gt=0, description="epochs to train; the epoch with the best validation balanced accuracy is kept"
    )
    learning_rate: float = Field(gt=0, lt=1, description="Adam's learning rate")
    device: Device = Field(description="auto picks CUDA, then Apple MPS, then CPU")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        description="fp32 (TF32 tensor cores on CUDA), or bf16/fp16 autocast on CUDA"
    )
    num_workers: int = Field(ge=0, description="loader processes per training process")
    seed: int = Field(
        description="the initial weights (only the new head's, with ImageNet weights), the order of the batches "
        "and every augmentation draw of training (real images and copies alike)"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(description="constant (published), or cosine after warmup")
    warmup_epochs: int = Field(ge=0, description="linear warmup epochs of the cosine schedule")
    weight_decay: float = Field(ge=0, description="Adam's L2 penalty")
    backbone_lr_factor: float = Field(
        ge=0,
        le=1,
        description="the pretrained backbone's learning rate as a fraction of learning_rate (the new head's); "
        "0 freezes it, BatchNorm statistics included: only the head learns (a linear probe)",
    )
    head_warmup_epochs: int = Field(ge=0, description="first epochs in which only the new head learns")
    loss: Literal["cross_entropy", "weighted_cross_entropy", "focal"] = Field(
        description="cross_entropy (published), weighted_cross_entropy (inverse class frequency), focal"
    )
    focal_gamma: float = Field(ge=0, description="the focusing exponent of `loss: focal`")
    label_smoothing: float = Field(ge=0, lt=1, description="label smoothing of the cross-entropy losses")
    early_stopping_patience: int = Field(
        ge=0, description="epochs without a better val balanced accuracy; 0: never stop"
    )
    grad_clip_norm: float = Field(ge=0, description="clip the gradients' global norm to this; 0: no clipping")
    calibration: Literal["none", "temperature"] = Field(
        description="temperature: fit one temperature on the validation split after the best epoch is chosen "
        "(saved in the model file; evaluate and predict divide the logits by it)"
    )
    augment_on: Literal["loader", "device"] = Field(
        description="loader: per image in the DataLoader workers; device: per batch after the transfer"
    )
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = Field(
        description="torch.compile mode for the training step, or none"
    )
    processes: int = Field(gt=0, description="training processes (DistributedDataParallel, one per GPU)")
    backend: Literal["auto", "nccl", "gloo"] = Field(description="torch.distributed backend; auto: nccl on CUDA")
    timeout_s: int = Field(gt=0, description="how long processes wait for each other before failing")

    @model_validator(mode="after")
    def _consistent(self) -> TrainingParams:
        if self.head_warmup_epochs >= self.epochs:
            raise ValueError(f"head_warmup_epochs: must be within [0, epochs), got {self.head_warmup_epochs}")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs: must be within [0, epochs), got {self.warmup_epochs}")
        if self.batch_size % self.processes:
            raise ValueError(
                f"batch_size: {self.batch_size} does not split evenly over {self.processes} processes "
                "(it is the batch of all processes together)"
            )
        return self


class PreparedImages(View):
    """The keys of `prepare` that training records in the model file (prepare-split checks them all)."""

    image_size: int
    crop_border: bool
    color_constancy: bool


class TrainRun(View):
    """The params the train stage reads."""

    prepare: PreparedImages
    augmentation: AugmentationParams
    model: ModelParams
    training: TrainingParams

    @model_validator(mode="after")
    def _augmentation_where_it_runs(self) -> TrainRun:
        augmentation = self.augmentation
        if self.training.augment_on == "device":
            if augmentation.real_images != "augment":
                raise ValueError(
                    "augmentation.real_images: only 'augment' works with training.augment_on: device "
                    "(the batch is augmented as one, copies and real images alike)"
                )
            if augmentation.hair or augmentation.frame:
                raise ValueError(
                    "augmentation.hair: hairs and frames (augmentation.frame) are drawn per image, "
                    "with training.augment_on: loader only"
                )
        return self
