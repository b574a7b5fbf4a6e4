//! Unit tests of the MQTT handlers, driven through `dispatch` with byte
//! slices and a clock the test sets (no sockets).
