"""ReSpike model components: ANN backbone, SNN branch, fusion and the hybrid model."""
