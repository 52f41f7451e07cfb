"""Sans-I/O operator state machines: ``feed``, ``flush``, ``deadline``, ``tick``."""
