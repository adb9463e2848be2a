"""pytest plugin: measure models on real boards from tests (entry point ``pytest11``).

Fixtures ``hw_target`` and ``hw_bench``, marker ``@pytest.mark.hw``, options ``--hw-*``,
a summary table and JSON report, baselines with regression checks.
"""
