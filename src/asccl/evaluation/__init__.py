"""Evaluation metrics: FID, FAD, CSIM (identity) and LSE-D/LSE-C (lip sync)."""
