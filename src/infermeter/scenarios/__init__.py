"""How queries are issued to a runner. Scenarios know no backend: they call the
runner's ``__call__`` and ``sync`` and let ``timing/`` read the clocks.

``single_stream``, ``multi_stream`` (closed loops, ``timing/loop.py``),
``offline`` (back-to-back batches), ``server`` (open loop, ``timing/schedule.py``);
``verdict`` judges a run VALID or INVALID as MLPerf LoadGen does; ``peak`` is
``--find-peak``; ``settings`` checks ``bench()``'s scenario keywords; ``run``
prepares batches and dispatches; ``outcome`` is what a scenario hands back.
"""
