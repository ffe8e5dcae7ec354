"""Evaluation (Section 5, Table 2): FID / IS / KID, feature extractors, truncation sweeps, qualitative figures."""
