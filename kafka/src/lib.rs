//! gm-kafka (being written).
