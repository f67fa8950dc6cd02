//! A small logger for the `log` facade: logfmt or JSON lines on stderr.
//!
//! STUB: being written.
