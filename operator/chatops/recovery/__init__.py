"""ChatRecovery: a restore as a pure state machine (`machine`), the steps that act on the
world (`steps`), and the look that joins them (`runner`)."""
