"""`lt bench`: throughput and memory measurements that print numbers (never timed unit tests)."""
