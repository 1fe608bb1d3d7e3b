"""chatops: a Kubernetes operator for the day-2 operations of a real-time chat app.

The `kubernetes` client's model and API packages load a name at a time in every chatops
process (`lazykube`): installed here, so it is in place before any module imports them.
"""

from chatops import lazykube

lazykube.install()
