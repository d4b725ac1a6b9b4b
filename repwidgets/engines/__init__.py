"""Compute engines: one module per method, plus shared numerics."""
