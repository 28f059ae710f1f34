-- Daily image counts per provider and the runs' reservations against them (imagegen/daily_images.py).
-- Portable: the same statements make the tables in the SQLite catalog (<out>/catalog.db) and in
-- PostgreSQL. Idempotent. Times are seconds since the epoch (UTC); `day` is the UTC date, YYYY-MM-DD.

-- Paid images sent per provider per UTC day, counted the moment each request is sent.
CREATE TABLE IF NOT EXISTS imagegen_daily_images (
    provider  TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    images    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, day)
);

-- Images a run's pre-flight set aside for the masters it must pay for; used up as it sends them, given
-- back when it ends. A run that dies stops renewing `expires_at`, and its reservation no longer counts.
CREATE TABLE IF NOT EXISTS imagegen_image_reservations (
    holder      TEXT             NOT NULL,
    provider    TEXT             NOT NULL,
    day         TEXT             NOT NULL,
    images      INTEGER          NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (holder, provider)
);
