"""From events to listener runs: discovery, the dispatcher's queues, running a listener, the journal, the stop file, pins, the reaper."""
