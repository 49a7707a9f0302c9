"""Stage 2: fine-tune the ASCCL metric on paired (neutral, emotional) face crops."""
