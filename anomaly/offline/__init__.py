"""Offline work for data scientists: walk-forward replay of a CSV, the alert decision, NAB scoring."""
