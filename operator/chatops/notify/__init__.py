"""Notifications: the Events of the three kinds told to receivers by webhook (generic JSON
or Slack), in the background, with retries. `message` and `outbox` are pure; `dispatcher`
holds the threads and the I/O."""
