"""Simulation back-ends for closed-loop evaluation (Meta-World)."""
