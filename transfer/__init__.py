"""SSA pretraining and transfer evaluation of self-supervised ResNets."""
