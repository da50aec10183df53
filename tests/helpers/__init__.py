"""What several test modules share (fixtures stay in ``tests/conftest.py``): one job per module."""
