"""Integrations with process launchers and schedulers (Ray). Each imports its framework lazily."""
