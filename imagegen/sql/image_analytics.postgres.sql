-- image_analytics: the seed's per-image record (filename, size_kb, dimensions, format, generation_time,
-- prompt_length, model), one row per media_assets row, derived by a view so that it can never disagree
-- with the catalog: reruns add no rows, a status change or a deleted row shows at once. Run it after
-- media_assets.postgres.sql (Supabase: in the SQL editor; `supabase.table("image_analytics")` reads it).
-- size_kb = bytes / 1024, generation_time in seconds (the provider call that made the file's master),
-- prompt_length in characters.
-- Created only when missing: a role that may write media_assets but does not own the view (an admin ran
-- this file) uses the catalog as before. PostgreSQL 15+ (every Supabase project): the view reads
-- media_assets with the reader's own rights, so row-level security on media_assets holds for it too.
DO $$
BEGIN
    IF to_regclass('image_analytics') IS NULL THEN
        CREATE VIEW image_analytics AS
        SELECT campaign,
               asset_id,
               variant,
               regexp_replace(store_key, '^.*/', '') AS filename,
               bytes::double precision / 1024 AS size_kb,
               width || 'x' || height AS dimensions,
               format,
               generation_ms::double precision / 1000 AS generation_time,
               char_length(prompt) AS prompt_length,
               model,
               provider,
               coalesce(metadata ->> 'platform', '') AS platform,
               status,
               bytes
        FROM media_assets;
        IF current_setting('server_version_num')::int >= 150000 THEN
            EXECUTE 'ALTER VIEW image_analytics SET (security_invoker = true)';
        END IF;
    END IF;
END
$$;
