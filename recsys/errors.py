"""Every error the engine raises on purpose, each subclassing the built-in it resembles."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class of the engine's own errors."""


class ConfigError(RecsysError, ValueError):
    """The configuration file is malformed: a bad key, type or value."""


class InputFileError(RecsysError, ValueError):
    """An input file cannot be read: missing, empty, not CSV/Parquet, wrong encoding."""


class SchemaError(RecsysError, ValueError):
    """An input table lacks a required column or holds values of the wrong kind."""


class EventsSchemaError(SchemaError):
    """The events log breaks the schema (raised under the strict policy)."""


class CatalogueSchemaError(SchemaError):
    """The item catalogue or user attributes file breaks the schema."""


class UnknownIdError(RecsysError, KeyError):
    """An id is not in an id map and the caller asked for an error rather than -1."""

    def __str__(self) -> str:
        # KeyError quotes its message; show it plainly like the other errors.
        return str(self.args[0]) if self.args else ""


class NotFittedError(RecsysError, ValueError):
    """A model was used before fit() was called."""


class ModelDirError(RecsysError, ValueError):
    """A model directory is missing, incomplete or corrupt (a checksum does not match)."""


class LockedError(RecsysError, RuntimeError):
    """Another run holds the model directory's lock."""


class GateRefusedError(RecsysError, RuntimeError):
    """The evaluation gate refused to publish a model worse than the one in use."""


class NotEnoughHistoryError(RecsysError, ValueError):
    """A time split leaves nothing to train on or nothing to evaluate."""
