"""Chains as written: the YAML spec and its validation (file:line problems), the limits
on configuration files, loading a chains directory, and reloading it while running."""
