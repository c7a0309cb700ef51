"""What the tests share: model builders, the in-process app and real server processes.

Test modules import from here (and take fixtures from ``tests/conftest.py``), never from
one another.
"""
