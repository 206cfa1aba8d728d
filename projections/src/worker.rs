//! Workers (below).
