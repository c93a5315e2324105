"""Helpers of tools/compare: what to run (plan: workloads; programs: real
programs; allocators: the list and --env), how to run it (runner,
program_runner, redis_driver), and how to report it (report, chart)."""
