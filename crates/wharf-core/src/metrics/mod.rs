//! CloudWatch metrics: the metric store ([`store`]) beside the resource store.

pub mod ecs;
pub mod store;

pub use store::{
    Bucket, Datum, HistoryItem, HistoryQuery, MetricKey, MetricListing, MetricStore, NO_UNIT, StatSet, Statistic,
    Window,
};
