"""The ISIC 2019 diagnostic classes, in the column order of the ground-truth CSV."""

CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
