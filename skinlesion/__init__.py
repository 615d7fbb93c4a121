"""skinlesion: the library behind the DVC stages in stages/.

config.py        the params loader (each section's schema lives beside the code it configures)
data/            ISIC files, image decoding, the lesion split, image arrays and manifests, external
                 test sets and their leakage guard
resampling/      K-Means undersampling and augmentation oversampling of the training split
transforms/      normalisation and the published augmentation (per image, or per batch on the GPU)
model/           backbones (torchvision, timm) and their pretrained weights, the model file, devices,
                 batched inference, the unknown score
training/        the training loop, its params, resuming, several processes
evaluation/      metrics, the test report, subgroups, cross-validation's figures, Grad-CAM, and
                 skinlesion compare (paired intervals between runs)
card/            the model card
export/          the model as ONNX
predict/         predicting new images: inputs, the torch and ONNX Runtime classifiers (the latter
                 without torch), Grad-CAM overlays, typed results, the output files, resumable runs
serve/           skinlesion serve: the model over HTTP (Open Inference Protocol routes, batching, a page)
errors.py        the project's errors, each reported as one line
digest.py        a file's sha256
seeding.py       the one function that seeds the global random generators
profiles.py      named sets of params, run as DVC experiments
cli.py           the `skinlesion` command (predict, serve, export, compare, import-isic, check-params,
                 run-profile, params-schema)
entry.py         how stages and the command start: known errors as one line, not a traceback
"""
