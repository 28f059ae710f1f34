-- media_assets: one row per stored file. Runs on PostgreSQL 13+ and Supabase (SQL editor or migration).
-- Natural key (campaign, asset_id, variant): reruns upsert, they never add rows.
CREATE TABLE IF NOT EXISTS media_assets (
    campaign        TEXT        NOT NULL,
    asset_id        TEXT        NOT NULL,
    variant         TEXT        NOT NULL,
    url             TEXT        NOT NULL,
    store           TEXT        NOT NULL,
    store_key       TEXT        NOT NULL,
    width           INTEGER     NOT NULL CHECK (width > 0),
    height          INTEGER     NOT NULL CHECK (height > 0),
    format          TEXT        NOT NULL,
    bytes           BIGINT      NOT NULL CHECK (bytes >= 0),
    sha256          TEXT        NOT NULL,
    phash           TEXT,
    prompt          TEXT        NOT NULL,
    negative_prompt TEXT        NOT NULL DEFAULT '',
    provider        TEXT        NOT NULL,
    model           TEXT        NOT NULL,
    seed            BIGINT      NOT NULL,
    generation_ms   INTEGER     NOT NULL DEFAULT 0,
    gates           JSONB       NOT NULL DEFAULT '{}'::jsonb,
    status          TEXT        NOT NULL CHECK (status IN ('published', 'quarantined')),
    alt_text        TEXT        NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    metadata        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (campaign, asset_id, variant)
);

CREATE INDEX IF NOT EXISTS media_assets_sha256_idx ON media_assets (sha256);
CREATE INDEX IF NOT EXISTS media_assets_status_idx ON media_assets (campaign, status);
