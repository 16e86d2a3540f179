-- Named queries for collector_service.store.partitions: xray_steps' partitions.

-- name: create_step_partitions
-- The function (migration 0009) takes an advisory lock, so collectors calling it at the
-- same time create each partition once. Creating a partition locks xray_steps, waiting for
-- queries that read it: the lock_timeout set alongside keeps that wait (and the queue of
-- writes behind it) short; a timed-out attempt is retried later. A NULL width means the
-- database's own (xray.step_partition_days, else 7).
SELECT xray_create_step_partitions(%(first_day)s::date, %(last_day)s::date,
                                   %(days_per_partition)s::integer)

-- name: step_partitions
-- Every partition of xray_steps with its bounds, oldest first; DEFAULT has none and is
-- not listed.
SELECT partition_name, low, high FROM xray_step_partition_bounds() ORDER BY low
