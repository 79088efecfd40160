"""The sales dialer: dialled-number handling, pass-through calling, people and the call log."""
