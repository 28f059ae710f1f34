-- Provider pacing shared by every worker whose catalog is this PostgreSQL (imagegen/postgres_pacing.py).
-- Idempotent; run under an advisory lock by the first worker that paces through it.

-- One row per provider account: `account` is the provider and a non-secret id of the account (a hash
-- prefix of the API key, a client id, a masked server URL), never a credential. `next_slot` is the
-- earliest time (the server's clock) the next request may start; taking a slot moves it one spacing on.
-- `paused_until` is set by a 429's Retry-After: no slot starts before it (NULL: no pause).
CREATE TABLE IF NOT EXISTS imagegen_pacing (
    account       TEXT        PRIMARY KEY,
    next_slot     TIMESTAMPTZ NOT NULL,
    paused_until  TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
