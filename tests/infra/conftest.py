"""Fixtures of the AWS template tests (defined in sam_template)."""
from sam_template import crate_routes, functions, template  # noqa: F401
