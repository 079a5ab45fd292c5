"""Evaluation: runs (generate -> grade -> summarise), metrics, sweeps, analysis and plots."""
