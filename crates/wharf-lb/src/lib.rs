//! Wharf's load balancer data plane: follows the ELBv2 resources in the store
//! (`wharf_types::elb`), serves every listener on its port, routes by rules, balances over
//! healthy targets, health-checks them (writing what it sees back to the store) and drains
//! deregistered ones.

#![forbid(unsafe_code)]
