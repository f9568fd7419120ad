"""Operator commands: `python -m app.admin <command>` with the service's own settings (environment).

strip-metadata   rewrite originals stored before metadata stripping (docs/operations.md)
"""
