"""Commands that help a person around a watcher: ``doctor``."""
