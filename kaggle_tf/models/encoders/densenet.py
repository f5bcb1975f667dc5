"""Encoders: densenet family."""
