"""Stage 1: index MEAD/RAVDESS clips, pair neutral and emotional frames by DTW on audio,
crop faces. See ``asccl data --help``."""
