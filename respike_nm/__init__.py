"""respike-nm: ReSpike hybrid ANN+SNN action recognition, carried to neuromorphic hardware."""

__version__ = "0.1.0"
