"""Sampling a trained G: latents and truncation (Section 3.1, Appendix E), standing statistics (C.1)."""
