"""Helpers shared by several test folders (imported as `support.…`: pytest puts tests/ on sys.path)."""
