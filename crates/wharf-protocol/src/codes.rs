//! The one place where Wharf's domain error becomes an AWS error code and HTTP status.

use crate::Protocol;
use wharf_types::{Error, InUse, Resource};

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Query envelopes say who is at fault: `Sender` or `Receiver`.
    pub sender_fault: bool,
}

/// Maps a domain error to the code `service` (its model's endpoint prefix) answers with.
pub fn wire_error(err: &Error, service: &str, protocol: Protocol) -> WireError {
    let query = protocol == Protocol::Query;
    let code = match (err, service) {
        (Error::InvalidParameter { .. }, _) if query => "ValidationError",
        (Error::InvalidParameter { .. }, "ecs" | "logs" | "api.ecr") => "InvalidParameterException",
        (Error::InvalidParameter { .. }, _) => "ValidationException",
        (Error::Serialization(_), _) if query => "MalformedInput",
        (Error::Serialization(_), _) => "SerializationException",
        (Error::Client(_), "ecs") => "ClientException",
        (Error::Client(_), _) if query => "InvalidAction",
        (Error::Client(_), _) => "ValidationException",
        (Error::NotFound { resource, .. }, _) => match resource {
            Resource::Cluster => "ClusterNotFoundException",
            Resource::Service => "ServiceNotFoundException",
            Resource::ServiceDeployment => "ServiceDeploymentNotFoundException",
            Resource::Target => "TargetNotFoundException",
            Resource::Other => "ResourceNotFoundException",
        },
        (Error::AlreadyExists(_), _) => "ResourceAlreadyExistsException",
        (Error::InUse { reason, .. }, _) => match reason {
            InUse::ClusterContainsServices => "ClusterContainsServicesException",
            InUse::ClusterContainsTasks => "ClusterContainsTasksException",
            InUse::ClusterContainsContainerInstances => "ClusterContainsContainerInstancesException",
            InUse::Resource => "ResourceInUseException",
        },
        (Error::ServiceNotActive(_), _) => "ServiceNotActiveException",
        (Error::Conflict(_), _) => "ConflictException",
        (Error::LimitExceeded(_), _) => "LimitExceededException",
        (Error::AttributeLimitExceeded(_), _) => "AttributeLimitExceededException",
        (Error::Unsupported(_), "ecs") => "UnsupportedFeatureException",
        (Error::Unsupported(_), _) => "UnsupportedOperation",
        (Error::Service { code, .. }, _) => code,
        (Error::Internal(_), "ecs") => "ServerException",
        (Error::Internal(_), _) if query => "InternalFailure",
        (Error::Internal(_), "logs") => "ServiceUnavailableException",
        (Error::Internal(_), _) => "InternalFailure",
    };
    let client = err.is_client_fault();
    let status = match err {
        Error::Service { status, .. } => *status,
        _ if client => 400,
        _ => 500,
    };
    WireError { status, code, message: err.to_string(), sender_fault: client }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_are_4xx_and_server_faults_5xx() {
        let e = wire_error(&Error::cluster_not_found(), "ecs", Protocol::Json);
        assert_eq!((e.status, e.code), (400, "ClusterNotFoundException"));
        let e = wire_error(&Error::Internal("disk".into()), "ecs", Protocol::Json);
        assert_eq!((e.status, e.code, e.sender_fault), (500, "ServerException", false));
        let e = wire_error(&Error::invalid("Name", "bad"), "sts", Protocol::Query);
        assert_eq!(e.code, "ValidationError");
    }

    #[test]
    fn elbv2_errors_are_sender_faults_with_their_own_codes() {
        let e = wire_error(&Error::service("PriorityInUse", "taken"), "elasticloadbalancing", Protocol::Query);
        assert_eq!((e.status, e.code, e.sender_fault), (400, "PriorityInUse", true));
        let e = wire_error(&Error::invalid("Port", "bad"), "elasticloadbalancing", Protocol::Query);
        assert_eq!((e.status, e.code, e.sender_fault), (400, "ValidationError", true));
        let e = wire_error(&Error::Internal("disk".into()), "elasticloadbalancing", Protocol::Query);
        assert_eq!((e.status, e.code, e.sender_fault), (500, "InternalFailure", false));
    }

    #[test]
    fn logs_errors_use_cloudwatch_logs_codes() {
        let code = |e: &Error| wire_error(e, "logs", Protocol::Json).code;
        assert_eq!(code(&Error::invalid("retentionInDays", "bad")), "InvalidParameterException");
        assert_eq!(code(&Error::AlreadyExists("exists".into())), "ResourceAlreadyExistsException");
        let missing = Error::NotFound { resource: Resource::Other, message: "gone".into() };
        assert_eq!(code(&missing), "ResourceNotFoundException");
        let e = wire_error(&Error::Internal("disk".into()), "logs", Protocol::Json);
        assert_eq!((e.status, e.code), (500, "ServiceUnavailableException"));
    }
}
