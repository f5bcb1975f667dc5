"""Encoders: convnext family."""
