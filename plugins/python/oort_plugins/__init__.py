"""Oort plugins written in Python, one module each (run with `python -m oort_plugins.<name>`)."""
