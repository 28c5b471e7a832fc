"""The web app of ``cadence serve``: people's own door to their plan and cadence."""
