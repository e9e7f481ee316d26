"""Projects, project policies and tags."""
from services.projects.service import ProjectsService

__all__ = ["ProjectsService"]
