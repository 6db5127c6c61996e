"""Code that several test modules share: oracles, fake data sets, particle batches and checks.

Imported as ``from tests.helpers.<module> import ...``; fixtures live in ``conftest.py`` files.
"""
