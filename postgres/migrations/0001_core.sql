-- Player snapshots, their per-partition watermarks, projection checkpoints and the
-- projections' read models. Same tables and semantics as the embedded SQLite store
-- (embedded/src/store.rs). Index names are left to PostgreSQL on purpose: a rebuild table
-- is created with `LIKE <live> INCLUDING ALL`, gets `<live>_rebuild...` index names, and the
-- swap renames them back to the live names (see src/store.rs, finish_rebuild).

CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    state BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS watermarks (
    partition INTEGER PRIMARY KEY,
    next_offset BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (projection, partition)
);

-- projection player_profiles
CREATE TABLE IF NOT EXISTS player_profiles (
    game_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    playtime_seconds BIGINT NOT NULL,
    purchases BIGINT NOT NULL,
    levels_completed BIGINT NOT NULL,
    xp BIGINT NOT NULL,
    current_level TEXT,
    country TEXT,
    language TEXT,
    consent_analytics BOOLEAN,
    consent_personalisation BOOLEAN,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (game_id, player_id)
);

CREATE TABLE IF NOT EXISTS profile_revenue (
    game_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (game_id, player_id, currency)
);

-- projection daily_activity
CREATE TABLE IF NOT EXISTS player_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    player_id TEXT NOT NULL,
    PRIMARY KEY (game_id, day, player_id)
);
CREATE INDEX IF NOT EXISTS player_days_game_id_player_id_idx ON player_days (game_id, player_id);

-- projection sessions
CREATE TABLE IF NOT EXISTS session_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    started BIGINT NOT NULL,
    closed BIGINT NOT NULL,
    total_length_seconds BIGINT NOT NULL,
    b0 BIGINT NOT NULL, b1 BIGINT NOT NULL, b2 BIGINT NOT NULL, b3 BIGINT NOT NULL,
    b4 BIGINT NOT NULL, b5 BIGINT NOT NULL, b6 BIGINT NOT NULL,
    PRIMARY KEY (game_id, day)
);

-- projection revenue
CREATE TABLE IF NOT EXISTS revenue_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    purchases BIGINT NOT NULL,
    PRIMARY KEY (game_id, day, currency)
);

CREATE TABLE IF NOT EXISTS payer_days (
    game_id TEXT NOT NULL,
    day DATE NOT NULL,
    player_id TEXT NOT NULL,
    PRIMARY KEY (game_id, day, player_id)
);
CREATE INDEX IF NOT EXISTS payer_days_game_id_player_id_idx ON payer_days (game_id, player_id);

-- projection funnel
CREATE TABLE IF NOT EXISTS funnel (
    game_id TEXT NOT NULL,
    level_id TEXT NOT NULL,
    starts BIGINT NOT NULL,
    completes BIGINT NOT NULL,
    fails BIGINT NOT NULL,
    PRIMARY KEY (game_id, level_id)
);
