"""Where the hints to look again come from: inotify read on the engine thread, watchdog's observer, the file-system type that decides between notifications and polling.

A source only wakes the engine; it never decides what happened.
"""
