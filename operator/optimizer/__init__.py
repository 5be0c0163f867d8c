"""The optimization Job: accuracy-gated graph optimization, quantization, pruning and compilation."""
