"""Version 1 of galley's distribution messages (generated code; see config.proto)."""
