use std::fmt;
use std::sync::Arc;

/// The one transport-free error of Wharf's domain. `wharf-protocol` maps each variant (and
/// its kind) to the AWS error code of the service being called; handlers never name a
/// code. Messages follow AWS's wording and name the offending field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule (model constraint or service rule).
    #[error("{message}")]
    InvalidParameter { field: String, message: String },
    /// A request that breaks a service rule its API reports with an error of its own rather
    /// than as a bad parameter (a target that is no IP address, a layer whose digest does not
    /// match its content, …).
    #[error("{message}")]
    Invalid { what: Invalid, message: String },
    /// The body could not be decoded into the operation's input shape (wrong JSON type).
    #[error("{0}")]
    Serialization(String),
    /// A request that is well-formed but not acceptable (ECS's `ClientException`).
    #[error("{0}")]
    Client(String),
    #[error("{message}")]
    NotFound { resource: Resource, message: String },
    /// A resource of that name (or an image of that digest or tag) already exists.
    #[error("{message}")]
    AlreadyExists { resource: Resource, message: String },
    /// The resource exists but its state forbids the operation.
    #[error("{message}")]
    InUse { reason: InUse, message: String },
    /// The service is not ACTIVE (draining or deleted), so it takes no updates.
    #[error("{0}")]
    NotActive(String),
    /// The resource's state conflicts with the request (ECS's `ConflictException`).
    #[error("{0}")]
    Conflict(String),
    /// The request would take a resource past one of its limits.
    #[error("{message}")]
    LimitExceeded { limit: Limit, message: String },
    /// The resource's own settings forbid the operation (deletion protection, a listener's
    /// default rule), whatever state it is in.
    #[error("{0}")]
    NotPermitted(String),
    /// A feature Wharf does not implement, or an AWS option it does not serve.
    #[error("{0}")]
    Unsupported(String),
    /// Our fault, not the caller's: a 5xx.
    #[error("{0}")]
    Internal(String),
    /// The state store failed: a 5xx. The store's error stays the source, so logs keep its
    /// cause chain; an `Arc` keeps `Error` cloneable and this crate free of the store's types.
    #[error("state store failure: {source}")]
    Store {
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The image registry's content storage failed (its disk, its state, a write that lost a
    /// race): a 5xx, which ECR reports with a code of its own.
    #[error(transparent)]
    Registry(Arc<dyn std::error::Error + Send + Sync>),
}

/// Which kind of resource was not found or already exists; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cluster,
    Service,
    ServiceDeployment,
    /// A container instance named as an attribute target (`TargetNotFoundException`).
    Target,
    LoadBalancer,
    TargetGroup,
    Listener,
    /// A listener rule.
    Rule,
    /// A listener's TLS certificate (a PEM file on the host).
    Certificate,
    /// An ECR repository, or the registry it would be in.
    Repository,
    RepositoryPolicy,
    LifecyclePolicy,
    /// The result of a lifecycle policy's dry run.
    LifecyclePolicyPreview,
    /// An image, by digest or tag.
    Image,
    /// An image tag; one that already exists cannot move when tags are immutable.
    ImageTag,
    /// An image layer (a blob).
    Layer,
    /// A layer upload session.
    Upload,
    /// An SSM parameter.
    Parameter,
    /// A version or label of an SSM parameter.
    ParameterVersion,
    /// A Secrets Manager secret.
    Secret,
    /// A CodeDeploy application.
    Application,
    /// A CodeDeploy deployment group.
    DeploymentGroup,
    /// A CodeDeploy deployment configuration.
    DeploymentConfig,
    /// A CodeDeploy deployment.
    Deployment,
    /// A CodeDeploy deployment's target (an ECS service).
    DeploymentTarget,
    /// An ECS task set.
    TaskSet,
    /// A CloudWatch alarm.
    Alarm,
    /// An Application Auto Scaling scalable target, scaling policy or scheduled action.
    ScalingObject,
    /// Generic `ResourceNotFoundException` (CloudWatch Logs' groups and streams, tagged
    /// resources).
    Other,
}

/// Why a resource is in use; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUse {
    ClusterContainsServices,
    ClusterContainsTasks,
    ClusterContainsContainerInstances,
    RepositoryContainsImages,
    /// Another rule of the listener has that priority.
    RulePriority,
    /// Another resource refers to it (a target group a listener or rule forwards to).
    Resource,
    /// A deployment group uses the CodeDeploy deployment configuration.
    DeploymentConfig,
}

/// Which limit a request would exceed; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Tags on one resource.
    Tags,
    /// Custom attributes on one resource.
    Attributes,
    /// Listeners on one load balancer.
    Listeners,
    /// Rules on one listener, besides its default rule.
    Rules,
    /// Actions of one listener or rule.
    Actions,
    /// Targets registered with one target group.
    Targets,
    /// Certificates of one listener.
    Certificates,
    /// Load balancers one target group serves (one).
    TargetGroupAssociations,
    /// Versions of one SSM parameter (100), all of them labelled so none can go.
    ParameterVersions,
    /// Labels on one SSM parameter version (10).
    ParameterLabels,
    /// Active CodeDeploy deployments of one deployment group (one).
    ActiveDeployments,
}

/// What in a request breaks a rule of the service's own; decides the AWS error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// A target that is not a valid IP address or instance of its group.
    Target,
    /// A listener or rule action that is incomplete or contradicts itself.
    Action,
    /// Settings that contradict each other or what the host already serves.
    Configuration,
    /// A tag key or value out of bounds, or with a reserved prefix.
    Tag,
    /// A tag key given twice in one request.
    DuplicateTagKey,
    /// An uploaded layer whose digest is malformed or does not match its content.
    Layer,
    /// A layer part that does not continue its upload.
    LayerPart,
    /// An upload completed without any content.
    EmptyUpload,
    /// An image digest that does not match the manifest given.
    ImageDigest,
    /// A CodeDeploy deployment that has already finished.
    DeploymentCompleted,
    /// A CodeDeploy deployment that is not waiting in the state the request needs.
    DeploymentNotReady,
    /// Parameters that cannot be given together, or one that needs another (CloudWatch's
    /// `InvalidParameterCombination`).
    Combination,
    /// A parameter the operation needs in this case (CloudWatch's `MissingParameter`).
    MissingParameter,
    /// A pagination token this listing did not hand out.
    NextToken,
    /// A document member that is not in the format it must be (CloudWatch's `InvalidFormat`).
    Format,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Cluster => "cluster",
            Resource::Service => "service",
            Resource::ServiceDeployment => "service deployment",
            Resource::Target => "target",
            Resource::LoadBalancer => "load balancer",
            Resource::TargetGroup => "target group",
            Resource::Listener => "listener",
            Resource::Rule => "rule",
            Resource::Certificate => "certificate",
            Resource::Repository => "repository",
            Resource::RepositoryPolicy => "repository policy",
            Resource::LifecyclePolicy => "lifecycle policy",
            Resource::LifecyclePolicyPreview => "lifecycle policy preview",
            Resource::Image => "image",
            Resource::ImageTag => "image tag",
            Resource::Layer => "layer",
            Resource::Upload => "upload",
            Resource::Parameter => "parameter",
            Resource::ParameterVersion => "parameter version",
            Resource::Secret => "secret",
            Resource::Application => "application",
            Resource::DeploymentGroup => "deployment group",
            Resource::DeploymentConfig => "deployment configuration",
            Resource::Deployment => "deployment",
            Resource::DeploymentTarget => "deployment target",
            Resource::TaskSet => "task set",
            Resource::Alarm => "alarm",
            Resource::ScalingObject => "scaling object",
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
    pub fn not_found(resource: Resource, message: impl Into<String>) -> Self {
        Error::NotFound { resource, message: message.into() }
    }
    pub fn already_exists(resource: Resource, message: impl Into<String>) -> Self {
        Error::AlreadyExists { resource, message: message.into() }
    }
    pub fn limit_exceeded(limit: Limit, message: impl Into<String>) -> Self {
        Error::LimitExceeded { limit, message: message.into() }
    }
    pub fn invalid_input(what: Invalid, message: impl Into<String>) -> Self {
        Error::Invalid { what, message: message.into() }
    }
    pub fn in_use(reason: InUse, message: impl Into<String>) -> Self {
        Error::InUse { reason, message: message.into() }
    }
    /// A state store failure, keeping `source` as the cause.
    pub fn store(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Store { source: Arc::new(source) }
    }
    /// An image registry storage failure, keeping `source` as the cause.
    pub fn registry(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Registry(Arc::new(source))
    }
    /// True when the caller is at fault (a 4xx).
    pub fn is_client_fault(&self) -> bool {
        !matches!(self, Error::Internal(_) | Error::Store { .. } | Error::Registry(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
