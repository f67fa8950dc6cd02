//! STUB: deadline (being written).
