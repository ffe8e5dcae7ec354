"""Training (paper Section 3, Appendix C): strategy, losses, EMA of G, the step, the loop, checkpoints.

Modules are imported on use; importing the package loads nothing heavy.
"""
