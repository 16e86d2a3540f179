-- Named queries behind `xray demo`: the analyst's five steps, scoped to the demo's runs.

-- name: flagged_filters
-- Step 1: the seed query.
SELECT run_id, step_name, seq, candidates_in, candidates_out, drop_ratio
FROM xray_steps
WHERE step_type = 'filter' AND drop_ratio > 0.9 AND run_id = ANY(%(run_ids)s)
ORDER BY drop_ratio DESC, run_id

-- name: reject_reasons
-- Step 3: one step's reasons, largest first (the analysts' view does the JSON work).
SELECT reason, count
FROM xray_reject_reasons
WHERE run_id = %(run_id)s AND seq = %(seq)s
ORDER BY count DESC, reason

-- name: previous_step
-- Step 4: the step before the filter, and the category mix of what it returned.
SELECT s.step_name, s.step_type, s.candidates_out, d.category, d.count::bigint
FROM xray_steps s
LEFT JOIN LATERAL jsonb_each_text(s.why_json -> 'category_distribution') AS d(category, count)
       ON true
WHERE s.run_id = %(run_id)s AND s.seq = %(seq)s - 1
ORDER BY d.count::bigint DESC NULLS LAST

-- name: keywords_by_run
-- Step 5: what keyword generation emitted, in flagged and in healthy runs.
SELECT s.run_id, s.run_id = ANY(%(flagged)s) AS flagged, k.keyword
FROM xray_steps s, jsonb_array_elements_text(s.output) AS k(keyword)
WHERE s.step_name = 'generate_keywords' AND s.run_id = ANY(%(run_ids)s)
  AND jsonb_typeof(s.output) = 'array'

-- name: final_pick
SELECT output ->> 'title', output ->> 'category'
FROM xray_steps
WHERE run_id = %(run_id)s AND step_name = 'select_best'

-- name: run_artifact
-- One stored artifact of the run, for the closing hint (the search's raw response first).
SELECT artifact_id, attribute FROM xray_artifacts
WHERE run_id = %(run_id)s AND NOT downgraded
ORDER BY size_bytes DESC, attribute
LIMIT 1
