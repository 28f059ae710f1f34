-- What the workers of one catalog share besides the ledger: the run budgets (imagegen/postgres_run_budget.py)
-- and the GitLab upload index (imagegen/stores/gitlab_index.py). Idempotent; run under the ledger's
-- advisory lock by the first worker that needs it.

-- One row per run in progress: its provider calls, counted by every process of the run against
-- `max_calls` (NULL: no limit). Deleted when the run ends; rows of killed runs are purged after a week.
CREATE TABLE IF NOT EXISTS imagegen_run_budgets (
    run_id      TEXT        PRIMARY KEY,
    max_calls   INTEGER     CHECK (max_calls >= 0),
    spent       INTEGER     NOT NULL DEFAULT 0 CHECK (spent >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The GitLab upload index (uploads mode): which upload holds each store key of a project. GitLab's upload
-- URLs carry a random secret, so only this index tells a worker that a file is there already.
CREATE TABLE IF NOT EXISTS gitlab_uploads (
    project      TEXT        NOT NULL,
    path         TEXT        NOT NULL,
    sha256       TEXT        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    url          TEXT        NOT NULL,
    upload_id    BIGINT,
    uploaded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project, path)
);
