"""What the watcher tells people and machines: the log (rich, plain lines or JSON lines)."""
