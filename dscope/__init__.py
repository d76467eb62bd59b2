"""D-Scope Blink: automated inspection of polished optical-fiber connector end faces."""

__version__ = "0.1.0"

#: Schema name and version of the per-image result document.
RESULT_SCHEMA = "dscope.result"
RESULT_SCHEMA_VERSION = "1.2.0"
