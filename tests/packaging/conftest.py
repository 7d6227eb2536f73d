"""The release artifacts come from tests/dist.py (fixtures `dist`, `single_file` in tests/conftest.py)."""
from tests.dist import version  # noqa: F401  (the tests here import it from this module)
