"""Jinja2 templates for exports (shipped in the wheel)."""
