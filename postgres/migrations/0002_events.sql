-- The `events` fact table (non-personal fields of every processed event) for analysts and
-- retention. Two layouts, chosen once, here, by whether TimescaleDB can be used:
--
-- * TimescaleDB (extension available AND preloaded): a hypertable on `ts` with daily chunks,
--   compression segmented by game_id after 7 days, a 90-day retention policy and the
--   continuous aggregate `daily_active_players` with a refresh policy. Written, not tested
--   in this repository's CI (the extension is not installable there).
-- * Plain PostgreSQL: `events` is natively RANGE-partitioned by UTC day on `ts`
--   (`events_YYYYMMDD`, created by gm_ensure_event_partitions) with a DEFAULT partition so
--   that an insert never fails; retention drops whole partitions
--   (gm_drop_event_partitions_before).
--
-- The two functions exist in both layouts, so callers need not know which one is in use.

-- Creates the missing daily partitions for [from_day, to_day] (UTC days, inclusive) and
-- returns how many it created. Rows of those days that already landed in the default
-- partition are moved into the new partition. A no-op under TimescaleDB (chunks are
-- created on insert).
CREATE OR REPLACE FUNCTION gm_ensure_event_partitions(from_day date, to_day date)
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    d date;
    part text;
    lo timestamptz;
    hi timestamptz;
    created integer := 0;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN 0;
    END IF;
    IF from_day IS NULL OR to_day IS NULL OR to_day < from_day THEN
        RETURN 0;
    END IF;
    IF to_day - from_day > 3660 THEN
        RAISE EXCEPTION 'gm_ensure_event_partitions: % days requested (% to %), at most 3661',
            to_day - from_day + 1, from_day, to_day;
    END IF;
    FOR d IN SELECT g::date FROM generate_series(from_day::timestamp, to_day::timestamp, interval '1 day') g LOOP
        part := 'events_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        -- One creator at a time; re-check under the lock.
        PERFORM pg_advisory_xact_lock(hashtext('gm_event_partitions'));
        CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;
        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
        IF EXISTS (SELECT 1 FROM events_default WHERE ts >= lo AND ts < hi) THEN
            CREATE TEMP TABLE IF NOT EXISTS gm_moved_events (LIKE events) ON COMMIT DROP;
            WITH m AS (DELETE FROM events_default WHERE ts >= lo AND ts < hi RETURNING *)
            INSERT INTO gm_moved_events SELECT * FROM m;
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
            INSERT INTO events SELECT * FROM gm_moved_events;
            TRUNCATE gm_moved_events;
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        END IF;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$fn$;

-- Drops every event older than `cutoff` (a UTC day; events of `cutoff` itself are kept)
-- by whole partitions / chunks, and returns the names of what was dropped. Under plain
-- PostgreSQL, rows of those days that sit in the default partition are deleted too.
CREATE OR REPLACE FUNCTION gm_drop_event_partitions_before(cutoff date)
RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    bound timestamptz := cutoff::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN QUERY EXECUTE 'SELECT c::text FROM drop_chunks(''events'', older_than => $1) c' USING bound;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gm_event_partitions'));
    FOR r IN
        SELECT c.relname::text AS name
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass
          AND c.relname ~ '^events_[0-9]{8}$'
          AND to_date(substr(c.relname, 8), 'YYYYMMDD') < cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', r.name);
        RETURN NEXT r.name;
    END LOOP;
    DELETE FROM events_default WHERE ts < bound;
    RETURN;
END
$fn$;

DO $do$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND coalesce(current_setting('shared_preload_libraries', true), '') LIKE '%timescaledb%' THEN
        -- TimescaleDB path (untested here).
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE events (
            ts TIMESTAMPTZ NOT NULL,
            event_id UUID NOT NULL,
            game_id TEXT NOT NULL,
            player_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            type TEXT NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            session_id TEXT,
            properties JSONB NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (ts, event_id)
        );
        CREATE INDEX events_game_id_ts_idx ON events (game_id, ts DESC);
        CREATE INDEX events_game_id_player_id_idx ON events (game_id, player_id);
        PERFORM create_hypertable('events', 'ts', chunk_time_interval => interval '1 day');
        ALTER TABLE events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'game_id',
            timescaledb.compress_orderby = 'ts DESC'
        );
        PERFORM add_compression_policy('events', interval '7 days');
        PERFORM add_retention_policy('events', interval '90 days');
        EXECUTE $cagg$
            CREATE MATERIALIZED VIEW daily_active_players
            WITH (timescaledb.continuous) AS
            SELECT time_bucket('1 day', ts) AS day, game_id, count(DISTINCT player_id) AS players
            FROM events
            GROUP BY 1, 2
            WITH NO DATA
        $cagg$;
        PERFORM add_continuous_aggregate_policy('daily_active_players',
            start_offset => interval '3 days',
            end_offset => interval '1 hour',
            schedule_interval => interval '1 hour');
    ELSE
        -- Plain PostgreSQL: native daily RANGE partitions plus a default partition.
        CREATE TABLE events (
            ts TIMESTAMPTZ NOT NULL,
            event_id UUID NOT NULL,
            game_id TEXT NOT NULL,
            player_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            type TEXT NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            session_id TEXT,
            properties JSONB NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (ts, event_id)
        ) PARTITION BY RANGE (ts);
        CREATE INDEX events_game_id_ts_idx ON events (game_id, ts);
        CREATE INDEX events_game_id_player_id_idx ON events (game_id, player_id);
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        PERFORM gm_ensure_event_partitions(current_date - 1, current_date + 7);
    END IF;
END
$do$;
