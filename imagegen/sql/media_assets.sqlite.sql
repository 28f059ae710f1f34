-- media_assets for SQLite: the same columns as media_assets.postgres.sql (JSON stored as TEXT).
CREATE TABLE IF NOT EXISTS media_assets (
    campaign        TEXT    NOT NULL,
    asset_id        TEXT    NOT NULL,
    variant         TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    store           TEXT    NOT NULL,
    store_key       TEXT    NOT NULL,
    width           INTEGER NOT NULL CHECK (width > 0),
    height          INTEGER NOT NULL CHECK (height > 0),
    format          TEXT    NOT NULL,
    bytes           INTEGER NOT NULL CHECK (bytes >= 0),
    sha256          TEXT    NOT NULL,
    phash           TEXT,
    prompt          TEXT    NOT NULL,
    negative_prompt TEXT    NOT NULL DEFAULT '',
    provider        TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    seed            INTEGER NOT NULL,
    generation_ms   INTEGER NOT NULL DEFAULT 0,
    gates           TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(gates)),
    status          TEXT    NOT NULL CHECK (status IN ('published', 'quarantined')),
    alt_text        TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    PRIMARY KEY (campaign, asset_id, variant)
);

CREATE INDEX IF NOT EXISTS media_assets_sha256_idx ON media_assets (sha256);
CREATE INDEX IF NOT EXISTS media_assets_status_idx ON media_assets (campaign, status);
