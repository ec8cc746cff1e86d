use std::fmt;

/// The one transport-free error of Wharf's domain. `wharf-protocol` maps each variant to
/// the AWS error code of the service being called; messages follow AWS's wording and name
/// the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule (model constraint or service rule).
    #[error("{message}")]
    InvalidParameter { field: String, message: String },
    /// The body could not be decoded into the operation's input shape (wrong JSON type).
    #[error("{0}")]
    Serialization(String),
    /// A request that is well-formed but not acceptable (ECS's `ClientException`).
    #[error("{0}")]
    Client(String),
    #[error("{message}")]
    NotFound { resource: Resource, message: String },
    /// A resource of that name already exists (CloudWatch Logs' `ResourceAlreadyExistsException`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource exists but its state forbids the operation.
    #[error("{message}")]
    InUse { reason: InUse, message: String },
    #[error("{0}")]
    ServiceNotActive(String),
    /// The resource's state conflicts with the request (ECS's `ConflictException`).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    /// Too many custom attributes on one resource (ECS's own limit error).
    #[error("{0}")]
    AttributeLimitExceeded(String),
    #[error("{0}")]
    Unsupported(String),
    /// A service-specific client error whose AWS code the handler knows best (ECR's
    /// `ImageTagAlreadyExistsException`, ELBv2's `PriorityInUse`, …): a 4xx with `status`.
    #[error("{message}")]
    Service { code: &'static str, status: u16, message: String },
    /// Our fault, not the caller's: a 5xx.
    #[error("{0}")]
    Internal(String),
}

/// Which kind of resource was not found; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cluster,
    Service,
    ServiceDeployment,
    /// A container instance named as an attribute target (`TargetNotFoundException`).
    Target,
    /// Generic `ResourceNotFoundException`.
    Other,
}

/// Why a resource is in use; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUse {
    ClusterContainsServices,
    ClusterContainsTasks,
    ClusterContainsContainerInstances,
    Resource,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Cluster => "cluster",
            Resource::Service => "service",
            Resource::ServiceDeployment => "service deployment",
            Resource::Target => "target",
            Resource::Other => "resource",
        })
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidParameter { field: field.into(), message: message.into() }
    }
    pub fn client(message: impl Into<String>) -> Self {
        Error::Client(message.into())
    }
    pub fn cluster_not_found() -> Self {
        Error::NotFound { resource: Resource::Cluster, message: "Cluster not found.".into() }
    }
    pub fn service_not_found() -> Self {
        Error::NotFound { resource: Resource::Service, message: "Service not found.".into() }
    }
    /// A service-specific client error (status 400) with AWS code `code`.
    pub fn service(code: &'static str, message: impl Into<String>) -> Self {
        Error::Service { code, status: 400, message: message.into() }
    }
    /// True when the caller is at fault (a 4xx).
    pub fn is_client_fault(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
