"""Generators and discriminators of BigGAN (Appendix B, Figure 15) and BigGAN-deep (Figure 16)."""
