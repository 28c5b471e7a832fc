"""Leaf modules every layer may use: domain values, time arithmetic, fault points, logging."""
