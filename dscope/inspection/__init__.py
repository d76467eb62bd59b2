"""Pure image functions: ndarray in, dataclasses out, no I/O."""
