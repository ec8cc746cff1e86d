//! Elastic Load Balancing v2's API (Query protocol, XML in the `2015-12-01` namespace):
//! load balancers, target groups, listeners, rules, targets and tags, kept in the store as
//! `wharf_types::elb` documents that the data plane (`wharf-lb`) serves.

operations! {}
