"""Training: the loop, its params, optimiser and loss, resuming, several processes."""
