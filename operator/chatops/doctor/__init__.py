"""`chatops doctor`: the runbook's daily health check of the chat app as one command.

Six checks, each answering ok, failed or skipped with a detail and how long it took:
the API's health URL, a MongoDB ping, a Redis PING, a WebSocket connect-and-echo, the
age of every ChatBackup's last good backup, and the ChatReleases that are not Succeeded.

    checks.py   pure: what each answer means (verdicts on what was seen), the exit code
    report.py   pure: the table a person reads and the JSON a machine reads
    chatops.adapters.probes   the I/O: one function per check that looks and says what it saw
    chatops.commands.doctor   the command: inputs from flags and the environment, the run
"""
