"""Cadence: keeps career-development conversations from lapsing."""
