//! gm-postgres (being written).
