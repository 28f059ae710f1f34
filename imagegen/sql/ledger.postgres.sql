-- The paid-call ledger and the masters it records, shared by every worker whose catalog is this
-- PostgreSQL (imagegen/postgres_ledger.py, imagegen/shared_masters.py). Idempotent; run under an
-- advisory lock by the first worker that needs it.

-- One row per paid call: `value` is what it returned (NULL until recorded). A claim holds the key while
-- `holder` is set and `lease_until` (the server's clock) is in the future; a holder that dies stops
-- renewing it, and the next claimant takes the key once it has passed.
CREATE TABLE IF NOT EXISTS imagegen_ledger (
    key          TEXT        PRIMARY KEY,
    kind         TEXT        NOT NULL,
    value        JSONB,
    holder       TEXT,
    lease_until  TIMESTAMPTZ,
    recorded_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Master bytes, content-addressed: written before the ledger entry that names them, read by any worker
-- whose own disk lacks the file. Stored uncompressed out of line (EXTERNAL: images do not compress), so
-- substring() reads a slice without the whole value and a master streams to disk in chunks.
DO $$
BEGIN
    IF to_regclass('imagegen_masters') IS NULL THEN
        CREATE TABLE imagegen_masters (
            sha256      TEXT        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            bytes       BYTEA       NOT NULL,
            size        BIGINT      NOT NULL CHECK (size >= 0),
            format      TEXT        NOT NULL,
            width       INTEGER     NOT NULL,
            height      INTEGER     NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        ALTER TABLE imagegen_masters ALTER COLUMN bytes SET STORAGE EXTERNAL;
    END IF;
END
$$;
