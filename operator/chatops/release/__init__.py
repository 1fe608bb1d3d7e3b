"""The release decision core: pure functions from what was observed to what to do."""
