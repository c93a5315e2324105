"""Helpers of tools/compare: what to run (plan) and how to report it (report)."""
