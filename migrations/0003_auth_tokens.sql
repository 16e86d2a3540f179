-- X-Ray schema v1, authentication: the bearer tokens managed by `xray tokens`.
-- Applied once, in a transaction, by `xray migrate` (collector_service.migrate).
-- A released migration file is never edited: add a new numbered file instead.
--
-- Only the SHA-256 of each token is stored; the secret is printed once, when the token
-- is created. Collectors read this table every two seconds, so creating or revoking a
-- token takes effect without a restart. While the table has any row, even a revoked
-- one, collectors require a token: revoking the last token never opens them to all.
-- Tokens given to a collector with --auth-token / XRAY_AUTH_TOKENS are not stored here.

CREATE TABLE xray_auth_tokens (
    token_id      text        PRIMARY KEY,
    name          text        NOT NULL CHECK (name <> ''),
    token_sha256  bytea       NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- A name identifies one live token, so `xray tokens revoke NAME` is never ambiguous;
-- a revoked token's name may be reused.
CREATE UNIQUE INDEX xray_auth_tokens_active_name_idx ON xray_auth_tokens (name)
    WHERE revoked_at IS NULL;

COMMENT ON TABLE xray_auth_tokens IS
    'Bearer tokens accepted by the collectors besides those in their configuration, '
    'managed with `xray tokens create|list|revoke`. One row per token ever created; a '
    'revoked token keeps its row. While any row exists, collectors require a token. '
    'Not readable by xray_analyst.';
COMMENT ON COLUMN xray_auth_tokens.token_id IS
    'Short public identifier of the token (12 lowercase hex characters), shown by '
    '`xray tokens list`; not a secret. Primary key.';
COMMENT ON COLUMN xray_auth_tokens.name IS
    'Who or what the token is for, as given to `xray tokens create --name`. Unique among '
    'tokens that are not revoked.';
COMMENT ON COLUMN xray_auth_tokens.token_sha256 IS
    'SHA-256 of the token (32 bytes). A presented token is accepted when its hash equals '
    'the hash of an unrevoked token. The token itself is never stored.';
COMMENT ON COLUMN xray_auth_tokens.created_at IS
    'When the token was created.';
COMMENT ON COLUMN xray_auth_tokens.revoked_at IS
    'When the token was revoked; collectors refuse it within about two seconds. NULL: '
    'the token is active.';

-- Migration 0002 lets xray_analyst read every table later migrations create; token
-- hashes are not analysts' business.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'xray_analyst') THEN
        REVOKE ALL ON xray_auth_tokens FROM xray_analyst;
    END IF;
END $$;
