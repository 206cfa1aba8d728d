-- The Kafka cluster whose offsets the stored positions (snapshot watermarks, projection
-- checkpoints) are. Written by `gamemetrics kafka-failover` after it translated them to a
-- mirror cluster, so that a second run cannot translate mirror offsets as if they were the
-- primary's. No row: the positions are those of the cluster the roles were started on.
CREATE TABLE IF NOT EXISTS log_cluster (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    cluster_id TEXT NOT NULL,
    brokers TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
