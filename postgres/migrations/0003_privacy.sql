-- Privacy (see gm-privacy): data keys and pseudonyms, sealed personal values kept for the
-- right of access, erasures with their timeline and receipt, the projections' confirmations,
-- and the append-only audit trail. Players appear here only as `subject`, an HMAC of
-- game_id:player_id; the player's id itself is in player_keys only until their erasure
-- completes.

CREATE TABLE IF NOT EXISTS player_keys (
    subject BYTEA PRIMARY KEY,
    game_id TEXT NOT NULL,
    player_id TEXT,
    pseudonym TEXT UNIQUE,
    -- nonce ‖ AES-256-GCM(master key, data key); NULL once destroyed (crypto-shredding).
    wrapped_key BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    erased_at TIMESTAMPTZ,
    suppressed_until TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS player_personal (
    subject BYTEA NOT NULL,
    event_id UUID NOT NULL,
    game_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    sealed JSONB NOT NULL,
    PRIMARY KEY (subject, event_id)
);

CREATE TABLE IF NOT EXISTS privacy_erasures (
    erasure_id UUID PRIMARY KEY,
    subject BYTEA NOT NULL,
    game_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'completed')),
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    timeline JSONB NOT NULL,
    receipt JSONB
);
CREATE INDEX IF NOT EXISTS privacy_erasures_subject ON privacy_erasures (subject, requested_at DESC);
CREATE INDEX IF NOT EXISTS privacy_erasures_pending ON privacy_erasures (requested_at) WHERE status = 'pending';

-- Written by each projection in the transaction that applies a PlayerErased event.
CREATE TABLE IF NOT EXISTS erasure_confirmations (
    erasure_id UUID NOT NULL,
    projection TEXT NOT NULL,
    confirmed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (erasure_id, projection)
);

CREATE TABLE IF NOT EXISTS privacy_audit (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    game_id TEXT,
    erasure_id UUID,
    subject BYTEA,
    detail TEXT
);

-- Append-only: updates and deletes are refused by the database itself.
CREATE OR REPLACE FUNCTION privacy_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'privacy_audit is append-only';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS privacy_audit_append_only ON privacy_audit;
CREATE TRIGGER privacy_audit_append_only BEFORE UPDATE OR DELETE ON privacy_audit
    FOR EACH ROW EXECUTE FUNCTION privacy_audit_append_only();
