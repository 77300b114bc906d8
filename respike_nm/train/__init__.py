"""Training and evaluation of ReSpike and its baselines."""
