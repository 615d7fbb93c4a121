"""Reading ISIC files, decoding images, the lesion split, decoded image arrays and manifests."""
