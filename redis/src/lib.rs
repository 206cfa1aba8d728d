//! gm-redis (being written).
