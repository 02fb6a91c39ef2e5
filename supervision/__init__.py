"""Supervision: OTP-style restart strategies for actors and plain trio tasks.

This package is importable but empty for now; it imports only trio and attrs, never
``actors`` (the dependency runs one way: ``actors`` -> ``supervision``).
"""

__all__: list[str] = []
