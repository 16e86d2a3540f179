-- The seed query served in index order, from the index alone.
--
-- The seed query orders by `drop_ratio DESC`, which in SQL means NULLS FIRST; the index of
-- 0001 was built DESC NULLS LAST, so PostgreSQL could not read it in that order: it
-- fetched every matching row from the table and sorted them. The index is rebuilt, under
-- the same name, with drop_ratio DESC (NULLS FIRST): a forward scan from the first
-- non-NULL drop ratio of a step type down to the bound returns the rows already in order.
-- started_at DESC breaks ties (the order of `xray steps`), and the columns the seed query
-- returns are stored in the index (INCLUDE), so it is answered by an index-only scan.
--
-- Plain DROP INDEX / CREATE INDEX on xray_steps also work when xray_steps is a
-- partitioned table (each partition gets its own index). Building the index blocks
-- writes to xray_steps for the time it takes (about 30 s per 10 million steps on two
-- cores).

DROP INDEX IF EXISTS xray_steps_type_drop_ratio_idx;

CREATE INDEX xray_steps_type_drop_ratio_idx
    ON xray_steps (step_type, drop_ratio DESC, started_at DESC)
    INCLUDE (run_id, step_name, candidates_in, candidates_out);
