"""Evaluation: converts predictions to each benchmark's format and computes its metrics."""
