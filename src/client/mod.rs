//! Blocking PSRT client (work in progress).
