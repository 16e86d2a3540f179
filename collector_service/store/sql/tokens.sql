-- Named queries for bearer tokens managed by `xray tokens` (table xray_auth_tokens).
-- Only SHA-256 hashes are stored; nothing here ever sees a token's secret.

-- name: create
INSERT INTO xray_auth_tokens (token_id, name, token_sha256)
VALUES (%(token_id)s, %(name)s, %(token_sha256)s)
RETURNING token_id, name, created_at, revoked_at

-- name: list
SELECT token_id, name, created_at, revoked_at
FROM xray_auth_tokens
ORDER BY created_at, token_id

-- name: find
-- An id matches any token; a name matches only the unrevoked token of that name.
SELECT token_id, name, created_at, revoked_at
FROM xray_auth_tokens
WHERE token_id = %(key)s OR (name = %(key)s AND revoked_at IS NULL)
ORDER BY token_id = %(key)s DESC
LIMIT 1

-- name: revoke
UPDATE xray_auth_tokens SET revoked_at = now()
WHERE token_id = %(token_id)s AND revoked_at IS NULL
RETURNING token_id, name, created_at, revoked_at

-- name: managed
-- Every token's hash and whether it is revoked: revoked tokens keep authentication on.
SELECT token_sha256, revoked_at IS NOT NULL FROM xray_auth_tokens
