"""How queries are issued to a runner. Scenarios know no backend: they call the
runner's ``__call__`` and ``sync`` and let ``timing/`` read the clocks."""
