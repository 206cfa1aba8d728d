-- Per-(game, day) counters the projections maintain next to their player-day rows (issue 15,
-- items 6 and 8), so the analytics queries read O(days in range) rows whatever the number of
-- players; the logic is gm_projections::counters.
--
-- activity_gaps (daily_activity) and payer_gaps (revenue): each player-day counted under its
-- day and its gap, the days since the player's previous day (0: none; 366: that many or
-- more). Distinct players of a window [a, b] = players of its days with gap 0 or
-- gap > day - a: DAU/WAU/MAU, and the distinct players and payers of a monetisation range.
-- retention_days (retention): per day, the active players, the cohort (players first seen
-- that day: the day's new players) and how many of it were active on day +1, +7, +30.
--
-- Backfilled below from the player-day tables, so an existing deployment's figures stay
-- right. The projections read a touched player's days around the batch's days by
-- (game_id, player_id, day): that index replaces the (game_id, player_id) ones.
CREATE TABLE IF NOT EXISTS activity_gaps (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    gap INT NOT NULL,
    players BIGINT NOT NULL,
    PRIMARY KEY (game_id, day, gap)
);
CREATE TABLE IF NOT EXISTS payer_gaps (LIKE activity_gaps INCLUDING ALL);
CREATE TABLE IF NOT EXISTS retention_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    active BIGINT NOT NULL,
    cohort BIGINT NOT NULL,
    d1 BIGINT NOT NULL,
    d7 BIGINT NOT NULL,
    d30 BIGINT NOT NULL,
    PRIMARY KEY (game_id, day)
);

CREATE INDEX IF NOT EXISTS player_days_game_id_player_id_day_idx ON player_days (game_id, player_id, day);
DROP INDEX IF EXISTS player_days_game_id_player_id_idx;
CREATE INDEX IF NOT EXISTS payer_days_game_id_player_id_day_idx ON payer_days (game_id, player_id, day);
DROP INDEX IF EXISTS payer_days_game_id_player_id_idx;
CREATE INDEX IF NOT EXISTS cohort_days_game_id_player_id_day_idx ON cohort_days (game_id, player_id, day);
DROP INDEX IF EXISTS cohort_days_game_id_player_id_idx;

-- The projections must not write while the counters are filled (their rows would be counted
-- twice or not at all): lock the player-day tables for the backfill.
LOCK TABLE player_days, payer_days, cohort_players, cohort_days IN SHARE MODE;

INSERT INTO activity_gaps (game_id, day, gap, players)
SELECT game_id, day, gap, COUNT(*) FROM (
    SELECT game_id, day,
        COALESCE(LEAST(day - LAG(day) OVER (PARTITION BY game_id, player_id ORDER BY day), 366), 0) AS gap
    FROM player_days
) s GROUP BY game_id, day, gap
ON CONFLICT DO NOTHING;

INSERT INTO payer_gaps (game_id, day, gap, players)
SELECT game_id, day, gap, COUNT(*) FROM (
    SELECT game_id, day,
        COALESCE(LEAST(day - LAG(day) OVER (PARTITION BY game_id, player_id ORDER BY day), 366), 0) AS gap
    FROM payer_days
) s GROUP BY game_id, day, gap
ON CONFLICT DO NOTHING;

INSERT INTO retention_days (game_id, day, active, cohort, d1, d7, d30)
SELECT game_id, day, SUM(active), SUM(cohort), SUM(d1), SUM(d7), SUM(d30) FROM (
    SELECT game_id, day, COUNT(*) AS active, 0 AS cohort, 0 AS d1, 0 AS d7, 0 AS d30
    FROM cohort_days GROUP BY game_id, day
    UNION ALL
    SELECT c.game_id, c.first_day, 0, COUNT(*),
        COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
            AND d.player_id = c.player_id AND d.day = c.first_day + 1)),
        COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
            AND d.player_id = c.player_id AND d.day = c.first_day + 7)),
        COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM cohort_days d WHERE d.game_id = c.game_id
            AND d.player_id = c.player_id AND d.day = c.first_day + 30))
    FROM cohort_players c GROUP BY c.game_id, c.first_day
) s GROUP BY game_id, day
ON CONFLICT DO NOTHING;
