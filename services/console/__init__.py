"""The web console: every "(Console)" step of the workflow in a browser (see app.py)."""
from services.console.app import Console, mount_console

__all__ = ["Console", "mount_console"]
