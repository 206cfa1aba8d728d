-- Read models of the leaderboards and retention projections (same tables and semantics as
-- the embedded store, embedded/src/store/games.rs). Index names are left to PostgreSQL so a
-- rebuild (LIKE ... INCLUDING ALL) and its swap rename them like the others.

-- projection leaderboards: the best score per game, board, period and player
CREATE TABLE IF NOT EXISTS leaderboard_scores (
    game_id TEXT NOT NULL,
    board TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start DATE NOT NULL,
    player_id TEXT NOT NULL,
    score BIGINT NOT NULL,
    PRIMARY KEY (game_id, board, period, period_start, player_id)
);
CREATE INDEX IF NOT EXISTS leaderboard_scores_by_score_idx
    ON leaderboard_scores (game_id, board, period, period_start, score DESC, player_id DESC);
CREATE INDEX IF NOT EXISTS leaderboard_scores_game_id_player_id_idx ON leaderboard_scores (game_id, player_id);

-- projection retention: each player's first UTC day, and the days they were active
CREATE TABLE IF NOT EXISTS cohort_players (
    game_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    first_day DATE NOT NULL,
    PRIMARY KEY (game_id, player_id)
);
CREATE INDEX IF NOT EXISTS cohort_players_game_id_first_day_idx ON cohort_players (game_id, first_day);

CREATE TABLE IF NOT EXISTS cohort_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    player_id TEXT NOT NULL,
    PRIMARY KEY (game_id, day, player_id)
);
CREATE INDEX IF NOT EXISTS cohort_days_game_id_player_id_idx ON cohort_days (game_id, player_id);
