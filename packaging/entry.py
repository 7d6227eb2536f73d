# The single file's entry point: hostagent's own `python -m hostagent` (hostagent/__main__.py).
import hostagent.__main__  # noqa: F401
