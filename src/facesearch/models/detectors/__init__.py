"""Face detectors: an image in, face boxes with five landmarks out (original pixels, left to right)."""
