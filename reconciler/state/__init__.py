"""The state file: its format (`model`), the atomic local store and its lock (`local`)."""
