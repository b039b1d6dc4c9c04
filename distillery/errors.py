"""One exception root for the whole project.

Every error says whether retrying the same operation may succeed (``retriable``),
in the manner of aiokafka's ``errors.py``. Third-party errors are wrapped where they
enter: ``raise SerializationError("...") from exc``.
"""

from __future__ import annotations


class DistilleryError(Exception):
    """Root of every error distillery raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(DistilleryError):
    """A setting, a task file or a CLI argument is wrong. Fix the input; do not retry."""


class SerializationError(DistilleryError):
    """Bytes that cannot be decoded or a record that cannot be encoded."""


class ValidationError(DistilleryError):
    """A decoded record breaks a contract (empty id, empty or oversized text, naive time)."""


class BrokerError(DistilleryError):
    """The embedded broker could not be started, stopped or reached."""

    retriable = True


class ModelError(DistilleryError):
    """A model file is missing, corrupt, or does not match its manifest. Refuse it."""


class RegistryError(DistilleryError):
    """The model registry is missing a task or version, or its state is inconsistent."""


class TeacherError(DistilleryError):
    """The teacher failed. ``retriable`` tells timeouts/429/5xx from invalid answers."""
