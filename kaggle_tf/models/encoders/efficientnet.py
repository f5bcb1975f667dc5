"""Encoders: efficientnet family."""
