"""E2EGI and its parts; importing this package registers them."""

from attacks import e2egi, e2egi_labels  # noqa: F401
