-- Named queries of collector_service.store.citus: X-Ray's tables on a Citus coordinator.

-- name: citus_installed
SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')

-- name: citus_preloaded
SELECT current_setting('shared_preload_libraries') LIKE '%citus%'

-- name: citus_tables
-- Tables Citus already knows (distributed, reference or local with metadata).
SELECT c.relname
FROM pg_dist_partition p
JOIN pg_class c ON c.oid = p.logicalrelid

-- name: create_extension
CREATE EXTENSION IF NOT EXISTS citus

-- name: set_coordinator
SELECT citus_set_coordinator_host(%(host)s, %(port)s)

-- name: coordinator_holds_shards
-- On one node the coordinator is also the only worker.
SELECT citus_set_node_property(%(host)s, %(port)s, 'shouldhaveshards', true)

-- name: table_layout
-- The given tables as Citus holds them (partitions are not listed: they follow their parent).
SELECT table_name::text, citus_table_type, distribution_column, shard_count
FROM citus_tables
WHERE table_name::text = ANY(%(tables)s::text[])
ORDER BY table_name::text

-- name: distribute_table
-- Hash-distributed on run_id; a partitioned table's partitions follow it, and partitions
-- created later (xray_create_step_partitions) are distributed as they are created.
SELECT create_distributed_table(%(table)s::regclass, 'run_id',
                                colocate_with => %(colocate_with)s)

-- name: replicate_table
SELECT create_reference_table(%(table)s::regclass)
