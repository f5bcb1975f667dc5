"""Encoders: resnet family."""
