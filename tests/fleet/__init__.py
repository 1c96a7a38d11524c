"""Fleet tests: several real processes share one PostgreSQL journal against loopback fakes."""
