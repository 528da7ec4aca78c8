"""Training data and fine-tuning (the `train` extra). The synthetic generator needs no extra deps."""
