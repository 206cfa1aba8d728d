-- gm_ensure_event_partitions again (0002), with one fix (issue 14's audit of first-sighting
-- races): two callers creating the same day at once. The second waited on the advisory lock,
-- then re-checked with to_regclass, whose cached catalog did not show the partition the first
-- had just committed, and failed with 42P07 "relation events_YYYYMMDD already exists". The
-- re-check is now a query on pg_class, under the statement's new snapshot.

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
        -- One creator at a time; re-check under the lock, with a query on pg_class (a new
        -- snapshot, which sees the partition a creator we waited for has committed; the
        -- relation cache behind to_regclass is not refreshed by taking an advisory lock).
        PERFORM pg_advisory_xact_lock(hashtext('gm_event_partitions'));
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_class c
            WHERE c.relname = part AND c.relnamespace = to_regnamespace(current_schema())
        );
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
