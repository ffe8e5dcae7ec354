"""Layers of the paper: spectral norm, cross-replica conditional BN, non-local block, ortho reg."""
