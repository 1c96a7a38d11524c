"""Crash tests: a real process running a batch is SIGKILLed and resumed."""
