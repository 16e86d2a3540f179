-- xray_steps' new partitions hold a week each (Monday to Sunday, UTC) instead of a day.
--
-- Every query that cannot prune by started_at (a run's steps by run_id, the seed query,
-- the collector's probe of a batch's stored steps) opens, plans and starts a scan in
-- every partition; with 30 days kept that was over 40 partitions, and at 10 million steps
-- the planning and those scan starts were a third of the seed query's server time.
-- Weekly partitions make that six times fewer. The price: `xray retention` drops whole
-- weeks, so it keeps up to six days more than asked (it says which cutoff it used).
--
-- The width is a database setting, read when partitions are created:
--   ALTER DATABASE xray SET xray.step_partition_days = 1;   -- back to days (1 to 28)
-- (new connections see it; collectors' pooled connections after they reconnect). Large
-- fleets, whose day is billions of steps, keep days: see docs/scale.md.
--
-- Existing partitions stay as they are: a new partition covers its period less whatever
-- existing partitions already cover, so a database moving from days to weeks gets one
-- partial week (for example Thursday to Sunday) and whole weeks after it.

DROP FUNCTION xray_create_step_partitions(date, date);

-- Each partition of xray_steps with its bounds; DEFAULT, which has none, is left out.
CREATE FUNCTION xray_step_partition_bounds()
RETURNS TABLE (partition_name text, low timestamptz, high timestamptz)
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT c.relname::text, bound[1]::timestamptz, bound[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                    'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS bound
    WHERE i.inhparent = 'xray_steps'::regclass AND bound IS NOT NULL
$$;

COMMENT ON FUNCTION xray_step_partition_bounds() IS
    'The partitions of xray_steps with the range of started_at each holds (low included, '
    'high excluded); xray_steps_default is not listed.';

-- Creates partitions so that every UTC day from first_day to last_day (both included) has
-- one, and returns the names created. A day without one gets the partition of its period
-- (days_per_partition days from a Monday, counted from 2000-01-03), less what existing
-- partitions cover; it is named xray_steps_pYYYYMMDD after its first day. Rows of its range
-- waiting in xray_steps_default move into it (PostgreSQL refuses a new partition whose
-- rows sit in the DEFAULT one). Collectors calling at once are serialised by an advisory
-- lock; creating a partition locks xray_steps briefly, so callers set lock_timeout.
CREATE FUNCTION xray_create_step_partitions(first_day date, last_day date,
                                            days_per_partition integer DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    width        integer := COALESCE(
                     days_per_partition,
                     NULLIF(current_setting('xray.step_partition_days', true), '')::integer,
                     7);
    day          date;
    day_start    timestamptz;
    period_start date;
    range_low    timestamptz;
    range_high   timestamptz;
    part_name    text;
    moving       bigint;
    column_list  text;
BEGIN
    IF width NOT BETWEEN 1 AND 28 THEN
        RAISE EXCEPTION 'days per partition must be 1 to 28, not %', width
            USING HINT = 'ALTER DATABASE ... SET xray.step_partition_days = 7 (or 1 for days)';
    END IF;
    PERFORM pg_advisory_xact_lock(5787463490699001);  -- fixed and arbitrary: 'XRAY' parts
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        day_start := day::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (SELECT 1 FROM xray_step_partition_bounds() b
                              WHERE b.low <= day_start AND day_start < b.high);
        period_start := day - (((day - date '2000-01-03') % width) + width) % width;
        range_low := period_start::timestamp AT TIME ZONE 'UTC';
        range_high := (period_start + width)::timestamp AT TIME ZONE 'UTC';
        SELECT GREATEST(range_low, max(b.high)) INTO range_low
        FROM xray_step_partition_bounds() b
        WHERE b.high > range_low AND b.high <= day_start;
        SELECT LEAST(range_high, min(b.low)) INTO range_high
        FROM xray_step_partition_bounds() b
        WHERE b.low > day_start AND b.low < range_high;
        part_name := 'xray_steps_p' || to_char(range_low AT TIME ZONE 'UTC', 'YYYYMMDD');
        SELECT count(*) INTO moving FROM xray_steps_default
        WHERE started_at >= range_low AND started_at < range_high;
        IF moving > 0 THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO column_list
            FROM pg_attribute
            WHERE attrelid = 'xray_steps'::regclass AND attnum > 0 AND NOT attisdropped
              AND attgenerated = '';
            EXECUTE format('CREATE TEMP TABLE xray_steps_moving ON COMMIT DROP AS '
                           'SELECT * FROM xray_steps_default '
                           'WHERE started_at >= %L AND started_at < %L', range_low, range_high);
            DELETE FROM xray_steps_default
            WHERE started_at >= range_low AND started_at < range_high;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF xray_steps FOR VALUES FROM (%L) TO (%L)',
                       part_name, range_low, range_high);
        IF moving > 0 THEN
            EXECUTE format('INSERT INTO xray_steps (%s) SELECT %s FROM xray_steps_moving',
                           column_list, column_list);
            DROP TABLE xray_steps_moving;
        END IF;
        RETURN NEXT part_name;
    END LOOP;
END
$$;

COMMENT ON FUNCTION xray_create_step_partitions(date, date, integer) IS
    'Creates the partitions of xray_steps missing for the UTC days first_day to last_day '
    '(xray_steps_pYYYYMMDD, named after their first day; days_per_partition wide, else '
    'the xray.step_partition_days setting, else 7: Monday to Sunday), moving their rows '
    'out of xray_steps_default; returns the names created. Collectors call it at start '
    'and hourly for yesterday to 7 days ahead.';

-- The empty partitions from yesterday on (the days ahead that 0007 and the collectors
-- made) give way to weeks at once; partitions holding rows stay. On a Citus coordinator
-- the emptiness check reads every shard, and Citus allows dropping a table after such a
-- read in one transaction only in its sequential mode.
DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    part  record;
    empty boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    FOR part IN SELECT b.partition_name FROM xray_step_partition_bounds() b
                WHERE b.low >= (today - 1)::timestamp AT TIME ZONE 'UTC' LOOP
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', part.partition_name);
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I)', part.partition_name) INTO empty;
        IF empty THEN
            EXECUTE format('DROP TABLE %I', part.partition_name);
        END IF;
    END LOOP;
    PERFORM xray_create_step_partitions(today - 1, today + 7);
END $$;
