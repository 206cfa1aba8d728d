-- The funnel by players (issue 16, item 5): one row per (game, level, player) with the
-- player's first start, completion and failure of the level, for distinct players per step
-- and the median time from start to completion (computed at query time). Bounded by players
-- times levels, whatever the players send. Erasure re-keys a player's rows to a pseudonym,
-- as in player_days. Filled from the events projected after this migration; run
-- `gamemetrics projections rebuild funnel` once to fill it from the whole log.
CREATE TABLE IF NOT EXISTS funnel_players (
    game_id TEXT NOT NULL,
    level_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    first_start TIMESTAMPTZ,
    first_complete TIMESTAMPTZ,
    first_fail TIMESTAMPTZ,
    PRIMARY KEY (game_id, level_id, player_id)
);
CREATE INDEX IF NOT EXISTS funnel_players_game_id_player_id_idx ON funnel_players (game_id, player_id);
