//! The psrtd server (work in progress).
