"""Calls made of legs: see :mod:`voipcore.calls.manager`."""
