"""Adapters for the ports: embedded (SQLite, local folder) and distributed ones."""
