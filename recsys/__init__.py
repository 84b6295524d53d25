"""Core library of the recommendation engine: schema, ingestion, id maps, matrices, models, metrics.

`training` and `serving` build on this package; it imports neither.
"""

from recsys.config import Config, config_from_dict, load_config
from recsys.ids import IdMap
from recsys.ingest import EventLog, LoadReport, load_events
from recsys.matrix import confidence_matrix
from recsys.schema import EVENT_TYPES, EventType

__version__ = "0.1.0"

__all__ = [
    "EVENT_TYPES",
    "Config",
    "EventLog",
    "EventType",
    "IdMap",
    "LoadReport",
    "__version__",
    "confidence_matrix",
    "config_from_dict",
    "load_config",
    "load_events",
]
