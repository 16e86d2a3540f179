-- The funnel diff: one pipeline's steps in two sets of runs (two versions or two time
-- windows), compared per step name. Shared by the viewer's diff page and `xray diff`.

-- name: funnel_diff
WITH sides AS (
    SELECT side, r.run_id
    FROM xray_runs r
    CROSS JOIN LATERAL (VALUES
        ('base', %(base_version)s::text, %(base_since)s::timestamptz, %(base_until)s::timestamptz),
        ('head', %(head_version)s::text, %(head_since)s::timestamptz, %(head_until)s::timestamptz)
    ) AS w(side, version, since, until)
    WHERE r.pipeline = %(pipeline)s
      AND (w.version IS NULL OR r.version = w.version)
      AND (w.since IS NULL OR r.started_at >= w.since)
      AND (w.until IS NULL OR r.started_at < w.until)
), steps AS (
    SELECT sd.side, s.step_name, s.drop_ratio, s.candidates_out, s.why_json
    FROM sides sd JOIN xray_steps s ON s.run_id = sd.run_id
), stats AS (
    SELECT step_name,
           count(*) FILTER (WHERE side = 'base') AS base_steps,
           count(*) FILTER (WHERE side = 'head') AS head_steps,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY drop_ratio)
               FILTER (WHERE side = 'base') AS base_drop,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY drop_ratio)
               FILTER (WHERE side = 'head') AS head_drop,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY candidates_out)
               FILTER (WHERE side = 'base') AS base_out,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY candidates_out)
               FILTER (WHERE side = 'head') AS head_out
    FROM steps GROUP BY step_name
), reason_counts AS (
    SELECT st.step_name, st.side, r.key AS reason, sum(r.value::text::numeric) AS n
    FROM steps st
    CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(st.why_json -> 'top_reject_reasons')
                                            = 'object'
                                       THEN st.why_json -> 'top_reject_reasons'
                                       ELSE '{}'::jsonb END) AS r
    WHERE jsonb_typeof(r.value) = 'number'
    GROUP BY st.step_name, st.side, r.key
), shares AS (
    SELECT step_name, side, reason,
           (n / NULLIF(sum(n) OVER (PARTITION BY step_name, side), 0))::float8 AS share
    FROM reason_counts
), reasons AS (
    SELECT step_name, jsonb_object_agg(reason, jsonb_build_object('base', base, 'head', head))
               AS reject_shares
    FROM (SELECT step_name, reason,
                 max(share) FILTER (WHERE side = 'base') AS base,
                 max(share) FILTER (WHERE side = 'head') AS head
          FROM shares GROUP BY step_name, reason) AS per_reason
    GROUP BY step_name
)
SELECT s.step_name, s.base_steps, s.head_steps, s.base_drop, s.head_drop,
       s.head_drop - s.base_drop AS drop_change, s.base_out, s.head_out,
       s.head_out - s.base_out AS out_change,
       COALESCE(r.reject_shares, '{}'::jsonb) AS reject_shares
FROM stats s LEFT JOIN reasons r USING (step_name)
ORDER BY abs(COALESCE(s.head_drop - s.base_drop, 0)) DESC,
         abs(COALESCE(s.head_out - s.base_out, 0)) DESC, s.step_name
