-- Named queries for collector_service.store.partitions: xray_steps' day partitions.

-- name: create_step_partitions
-- The function (migration 0007) takes an advisory lock, so collectors calling it at the
-- same time create each partition once. Creating a partition locks xray_steps, waiting for
-- queries that read it: the lock_timeout set alongside keeps that wait (and the queue of
-- writes behind it) short; a timed-out attempt is retried later.
SELECT xray_create_step_partitions(%(first_day)s::date, %(last_day)s::date)

-- name: step_partitions
-- Every partition of xray_steps with its bounds; DEFAULT has none. Day partitions are the
-- ones created by xray_create_step_partitions, named xray_steps_pYYYYMMDD.
SELECT c.relname,
       pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'xray_steps'::regclass
ORDER BY c.relname
