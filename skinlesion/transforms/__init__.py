"""Image transforms: the normalisation every stage shares and the published augmentation."""
