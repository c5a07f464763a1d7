"""Simulators that stand in for external systems (TrueNAS middleware, ...) in tests and demos."""
