"""Backends: BACKENDS maps a name to "module:Class", imported lazily."""
