//! The pure control-plane core: no I/O, everything tested in memory.
