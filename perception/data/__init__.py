"""Datasets, pipelines, info files and the synthetic world generator."""
