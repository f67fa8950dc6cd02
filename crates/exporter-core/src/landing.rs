//! STUB: landing (being written).
