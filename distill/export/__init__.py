"""Exporting a run's students to deployment formats (`distill export`). Never imported by the training path."""
