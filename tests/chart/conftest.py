"""Fixtures of the chart tests (defined in helm_render)."""
from helm_render import any_render, default_render, production_render  # noqa: F401
