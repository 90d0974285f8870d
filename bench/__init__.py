"""The benchmark harness: `python -m bench` (full run, writes bench/results.md) and
`python -m bench --smoke` (seconds, small sizes; checks the harness works, not the speed)."""
