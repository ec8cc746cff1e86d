//! Typed ARNs and the account/region scope every resource lives in.

use crate::Error;
use std::fmt;

/// The account and region a request acts in; resources are partitioned by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope { account: account.into(), region: region.into() }
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>`.
    pub fn arn(&self, service: &str, resource: impl fmt::Display) -> String {
        format!("arn:aws:{service}:{}:{}:{resource}", self.region, self.account)
    }
}

/// A parsed ARN. `resource` is everything after the fifth colon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    pub fn parse(s: &str) -> Option<Arn> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let arn = Arn {
            partition: parts.next()?.to_string(),
            service: parts.next()?.to_string(),
            region: parts.next()?.to_string(),
            account: parts.next()?.to_string(),
            resource: parts.next()?.to_string(),
        };
        (!arn.partition.is_empty() && !arn.service.is_empty() && !arn.resource.is_empty()).then_some(arn)
    }

    /// Resource type and the rest: `service/c/s` → (`service`, `c/s`).
    pub fn resource_parts(&self) -> (&str, &str) {
        self.resource.split_once('/').unwrap_or((self.resource.as_str(), ""))
    }

    /// Parses an ARN that must belong to `scope` and `service`, or fails naming `field`.
    pub fn parse_in(s: &str, scope: &Scope, service: &str, field: &str) -> Result<Arn, Error> {
        match Arn::parse(s) {
            Some(a) if a.service == service && a.region == scope.region && a.account == scope.account => Ok(a),
            _ => Err(Error::invalid(field, format!("The ARN '{s}' in {field} is not valid."))),
        }
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:{}:{}:{}:{}", self.partition, self.service, self.region, self.account, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let s = "arn:aws:ecs:us-east-1:123456789012:service/c1/web";
        let a = Arn::parse(s).unwrap();
        assert_eq!(a.resource_parts(), ("service", "c1/web"));
        assert_eq!(a.to_string(), s);
        assert!(Arn::parse("arn:aws:ecs").is_none());
        assert!(Arn::parse("cluster/x").is_none());
    }

    #[test]
    fn parse_in_checks_scope() {
        let scope = Scope::new("123456789012", "us-east-1");
        assert!(Arn::parse_in("arn:aws:ecs:us-east-1:123456789012:cluster/a", &scope, "ecs", "cluster").is_ok());
        let err = Arn::parse_in("arn:aws:ecs:eu-west-1:123456789012:cluster/a", &scope, "ecs", "cluster").unwrap_err();
        assert!(err.to_string().contains("cluster"));
    }
}
