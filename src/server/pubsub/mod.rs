//! Publish and subscribe: the subscription tree (`matcher`), the one
//! publish pipeline every message enters by (`pipeline`), the fan-out into
//! subscribers' send queues (`deliver`), and the slow-consumer policy of
//! those queues (`outbox`).

#[cfg(test)]
mod accounting_tests;
pub(crate) mod deliver;
pub(crate) mod matcher;
pub(crate) mod outbox;
pub(crate) mod pipeline;
#[cfg(test)]
mod tests;

pub(crate) use matcher::Matcher;
