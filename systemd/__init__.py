"""The unit template (package data); a regular package so importlib.resources finds it on Python 3.9."""
