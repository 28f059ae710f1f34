-- image_analytics for SQLite: the seed's per-image record (filename, size_kb, dimensions, format,
-- generation_time, prompt_length, model), one row per media_assets row, derived by a view so that it can
-- never disagree with the catalog: reruns add no rows, a status change or a deleted row shows at once.
-- The same columns as image_analytics.postgres.sql. size_kb = bytes / 1024, generation_time in seconds
-- (the provider call that made the file's master), prompt_length in characters.
CREATE VIEW IF NOT EXISTS image_analytics AS
SELECT campaign,
       asset_id,
       variant,
       substr(store_key, length(rtrim(store_key, replace(store_key, '/', ''))) + 1) AS filename,
       bytes / 1024.0 AS size_kb,
       width || 'x' || height AS dimensions,
       format,
       generation_ms / 1000.0 AS generation_time,
       length(prompt) AS prompt_length,
       model,
       provider,
       coalesce(json_extract(metadata, '$.platform'), '') AS platform,
       status,
       bytes
FROM media_assets;
