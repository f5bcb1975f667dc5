"""Encoders: testing family."""
