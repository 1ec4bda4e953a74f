"""Folder put first on a server's PYTHONPATH to run its sitecustomize.py (the stack profile) in every process."""
