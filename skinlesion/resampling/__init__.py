"""Class rebalancing of the training split: K-Means undersampling, augmentation oversampling."""
