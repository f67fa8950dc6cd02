//! STUB: self_metrics (being written).
