"""distillery: distil an expensive teacher model into a cheap student on a live stream."""

from distillery.errors import DistilleryError
from distillery.settings import Settings, load_settings
from distillery.tasks import LabelSpec, TaskConfig, get_task, load_tasks

__all__ = [
    "DistilleryError",
    "LabelSpec",
    "Settings",
    "TaskConfig",
    "get_task",
    "load_settings",
    "load_tasks",
]
__version__ = "0.1.0"
