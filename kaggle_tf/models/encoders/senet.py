"""Encoders: senet family."""
