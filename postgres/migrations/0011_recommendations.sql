-- Read model of the recommendations projection (same tables and semantics as the embedded
-- store, embedded/src/store/reco.rs): per-player interactions, per-item and per-pair player
-- counts (no player id), and the outbox of lists to publish to recommendations.generated.

CREATE TABLE IF NOT EXISTS reco_affinity (
    game_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    item TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    last_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (game_id, player_id, item)
);

CREATE TABLE IF NOT EXISTS reco_items (
    game_id TEXT NOT NULL,
    item TEXT NOT NULL,
    players BIGINT NOT NULL,
    PRIMARY KEY (game_id, item)
);
CREATE INDEX IF NOT EXISTS reco_items_game_id_players_idx ON reco_items (game_id, players DESC);

CREATE TABLE IF NOT EXISTS reco_pairs (
    game_id TEXT NOT NULL,
    item_a TEXT NOT NULL,
    item_b TEXT NOT NULL,
    players BIGINT NOT NULL,
    PRIMARY KEY (game_id, item_a, item_b)
);

CREATE TABLE IF NOT EXISTS reco_outbox (
    game_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    erased BOOLEAN NOT NULL,
    PRIMARY KEY (game_id, player_id)
);
