//! STUB: coalesce (being written).
