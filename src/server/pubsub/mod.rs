//! Publish and subscribe: the subscription tree (`matcher`), the one
//! publish pipeline every message enters by (`pipeline`), the fan-out into
//! subscribers' send queues (`deliver`), the slow-consumer policy of those
//! queues (`outbox`), and the busiest topics (`top`, a bounded table the
//! pipeline counts into).

#[cfg(test)]
mod accounting_tests;
pub(crate) mod deliver;
pub(crate) mod matcher;
pub(crate) mod outbox;
pub(crate) mod pipeline;
#[cfg(test)]
mod tests;
pub(crate) mod top;
#[cfg(test)]
mod top_tests;

pub(crate) use matcher::Matcher;
