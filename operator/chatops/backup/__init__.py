"""Backups and restores of the chat app's MongoDB: the dump format, the manifest, the
retention policy and the schedule (pure), and the dump and restore engines (I/O through
`chatops.adapters`)."""
