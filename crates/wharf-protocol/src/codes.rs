//! The one place where Wharf's domain error becomes an AWS error code and HTTP status.

use crate::Protocol;
use wharf_types::{Error, InUse, Invalid, Limit, Resource};

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Query envelopes say who is at fault: `Sender` or `Receiver`.
    pub sender_fault: bool,
}

/// Maps a domain error to the code `service` (its model's endpoint prefix) answers with: the
/// one table from Wharf's domain errors to AWS's codes. The HTTP status and the fault follow
/// from the error: 400 and the sender's fault, or 500 and ours.
pub fn wire_error(err: &Error, service: &str, protocol: Protocol) -> WireError {
    let query = protocol == Protocol::Query;
    let elb = service == "elasticloadbalancing";
    let code = match (err, service) {
        // CloudWatch answers its Query codes in every protocol it speaks.
        (Error::InvalidParameter { .. }, "monitoring") => "InvalidParameterValue",
        (Error::InvalidParameter { .. }, _) if query => "ValidationError",
        (Error::InvalidParameter { field, .. }, "codedeploy") => codedeploy_invalid(field),
        (Error::InvalidParameter { .. }, "ecs" | "logs" | "api.ecr" | "secretsmanager") => "InvalidParameterException",
        (Error::InvalidParameter { .. }, _) => "ValidationException",
        (Error::Invalid { what, .. }, _) => match what {
            Invalid::Target => "InvalidTarget",
            Invalid::Action => "InvalidLoadBalancerAction",
            Invalid::Configuration => "InvalidConfigurationRequest",
            Invalid::Tag => "InvalidTagParameterException",
            Invalid::DuplicateTagKey => "DuplicateTagKeys",
            Invalid::Layer => "InvalidLayerException",
            Invalid::LayerPart => "InvalidLayerPartException",
            Invalid::EmptyUpload => "EmptyUploadException",
            Invalid::ImageDigest => "ImageDigestDoesNotMatchException",
            Invalid::DeploymentCompleted => "DeploymentAlreadyCompletedException",
            Invalid::DeploymentNotReady => "DeploymentIsNotInReadyStateException",
            Invalid::Combination if service == "monitoring" => "InvalidParameterCombination",
            Invalid::MissingParameter if service == "monitoring" => "MissingParameter",
            Invalid::Combination | Invalid::MissingParameter => "ValidationException",
            Invalid::NextToken if service == "monitoring" => "InvalidNextToken",
            Invalid::NextToken => "InvalidNextTokenException",
            Invalid::Format if service == "monitoring" => "InvalidFormat",
            Invalid::Format => "ValidationException",
        },
        (Error::Serialization(_), _) if query => "MalformedInput",
        (Error::Serialization(_), _) => "SerializationException",
        (Error::Client(_), "ecs") => "ClientException",
        (Error::Client(_), "secretsmanager") => "InvalidRequestException",
        (Error::Client(_), _) if query => "InvalidAction",
        (Error::Client(_), _) => "ValidationException",
        (Error::NotFound { resource, .. }, _) => match resource {
            Resource::Cluster => "ClusterNotFoundException",
            Resource::Service => "ServiceNotFoundException",
            Resource::ServiceDeployment => "ServiceDeploymentNotFoundException",
            Resource::Target => "TargetNotFoundException",
            Resource::LoadBalancer => "LoadBalancerNotFound",
            Resource::TargetGroup => "TargetGroupNotFound",
            Resource::Listener => "ListenerNotFound",
            Resource::Rule => "RuleNotFound",
            Resource::Certificate => "CertificateNotFound",
            Resource::Repository => "RepositoryNotFoundException",
            Resource::RepositoryPolicy => "RepositoryPolicyNotFoundException",
            Resource::LifecyclePolicy => "LifecyclePolicyNotFoundException",
            Resource::LifecyclePolicyPreview => "LifecyclePolicyPreviewNotFoundException",
            // ECR has one code for an image missing by digest or by tag.
            Resource::Image | Resource::ImageTag => "ImageNotFoundException",
            Resource::Layer => "LayersNotFoundException",
            Resource::Upload => "UploadNotFoundException",
            Resource::Parameter => "ParameterNotFound",
            Resource::ParameterVersion => "ParameterVersionNotFound",
            Resource::Secret => "ResourceNotFoundException",
            Resource::Application => "ApplicationDoesNotExistException",
            Resource::DeploymentGroup => "DeploymentGroupDoesNotExistException",
            Resource::DeploymentConfig => "DeploymentConfigDoesNotExistException",
            Resource::Deployment => "DeploymentDoesNotExistException",
            Resource::DeploymentTarget => "DeploymentTargetDoesNotExistException",
            Resource::TaskSet => "TaskSetNotFoundException",
            Resource::Alarm => "ResourceNotFound",
            Resource::ScalingObject => "ObjectNotFoundException",
            Resource::Other => "ResourceNotFoundException",
        },
        (Error::AlreadyExists { resource, .. }, _) => match resource {
            Resource::LoadBalancer => "DuplicateLoadBalancerName",
            Resource::TargetGroup => "DuplicateTargetGroupName",
            Resource::Listener => "DuplicateListener",
            Resource::Repository => "RepositoryAlreadyExistsException",
            Resource::Image => "ImageAlreadyExistsException",
            // An existing tag is only an error when tags are immutable; ECR's code says so.
            Resource::ImageTag => "ImageTagAlreadyExistsException",
            Resource::Parameter => "ParameterAlreadyExists",
            Resource::Secret => "ResourceExistsException",
            Resource::Application => "ApplicationAlreadyExistsException",
            Resource::DeploymentGroup => "DeploymentGroupAlreadyExistsException",
            Resource::DeploymentConfig => "DeploymentConfigAlreadyExistsException",
            // CloudWatch Logs' groups and streams, and any kind without a code of its own.
            _ => "ResourceAlreadyExistsException",
        },
        (Error::InUse { reason, .. }, _) => match reason {
            InUse::ClusterContainsServices => "ClusterContainsServicesException",
            InUse::ClusterContainsTasks => "ClusterContainsTasksException",
            InUse::ClusterContainsContainerInstances => "ClusterContainsContainerInstancesException",
            InUse::RepositoryContainsImages => "RepositoryNotEmptyException",
            InUse::RulePriority => "PriorityInUse",
            InUse::Resource if elb => "ResourceInUse",
            InUse::Resource => "ResourceInUseException",
            InUse::DeploymentConfig => "DeploymentConfigInUseException",
        },
        (Error::NotActive(_), _) => "ServiceNotActiveException",
        (Error::Conflict(_), "application-autoscaling") => "ConcurrentUpdateException",
        (Error::Conflict(_), _) => "ConflictException",
        (Error::LimitExceeded { .. }, "monitoring") => "LimitExceeded",
        (Error::LimitExceeded { limit, .. }, _) => match limit {
            Limit::Tags if elb => "TooManyTags",
            Limit::Tags if service == "ssm" => "TooManyTagsError",
            Limit::Tags => "TooManyTagsException",
            Limit::Attributes => "AttributeLimitExceededException",
            Limit::Listeners => "TooManyListeners",
            Limit::Rules => "TooManyRules",
            Limit::Actions => "TooManyActions",
            Limit::Targets => "TooManyTargets",
            Limit::Certificates => "TooManyCertificates",
            Limit::TargetGroupAssociations => "TargetGroupAssociationLimit",
            Limit::ParameterVersions => "ParameterMaxVersionLimitExceeded",
            Limit::ParameterLabels => "ParameterVersionLabelLimitExceeded",
            Limit::ActiveDeployments => "DeploymentLimitExceededException",
        },
        (Error::NotPermitted(_), _) => "OperationNotPermitted",
        (Error::Unsupported(_), "ecs") => "UnsupportedFeatureException",
        (Error::Unsupported(_), "codedeploy") => "UnsupportedActionForDeploymentTypeException",
        // ELBv2's one code for a protocol, load balancer type or action it does not serve.
        (Error::Unsupported(_), "elasticloadbalancing") => "UnsupportedProtocol",
        (Error::Unsupported(_), _) => "UnsupportedOperation",
        // ECR's modelled server fault; its internal and store failures answer `InternalFailure`.
        (Error::Registry(_), "api.ecr") => "ServerException",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), "ecs") => "ServerException",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), _) if query => "InternalFailure",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), "logs") => "ServiceUnavailableException",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), "ssm") => "InternalServerError",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), "secretsmanager") => "InternalServiceError",
        (Error::Internal(_) | Error::Store { .. } | Error::Registry(_), _) => "InternalFailure",
    };
    let client = err.is_client_fault();
    WireError { status: if client { 400 } else { 500 }, code, message: err.to_string(), sender_fault: client }
}

/// CodeDeploy names a bad parameter by its own exception: the field decides it.
fn codedeploy_invalid(field: &str) -> &'static str {
    match field.split(['.', '[']).next().unwrap_or(field) {
        "applicationName" => "InvalidApplicationNameException",
        "deploymentGroupName" | "newDeploymentGroupName" => "InvalidDeploymentGroupNameException",
        "deploymentConfigName" => "InvalidDeploymentConfigNameException",
        "deploymentId" | "deploymentIds" => "InvalidDeploymentIdException",
        "targetId" | "targetIds" => "InvalidDeploymentTargetIdException",
        "computePlatform" => "InvalidComputePlatformException",
        "deploymentStyle" => "InvalidDeploymentStyleException",
        "blueGreenDeploymentConfiguration" => "InvalidBlueGreenDeploymentConfigurationException",
        "loadBalancerInfo" if field.contains("targetGroupPairInfoList") => "InvalidTargetGroupPairException",
        "loadBalancerInfo" => "InvalidLoadBalancerInfoException",
        "ecsServices" => "InvalidECSServiceException",
        "revision" => "InvalidRevisionException",
        "trafficRoutingConfig" => "InvalidTrafficRoutingConfigurationException",
        "minimumHealthyHosts" => "InvalidMinimumHealthyHostValueException",
        "serviceRoleArn" => "InvalidRoleException",
        "autoRollbackConfiguration" => "InvalidAutoRollbackConfigException",
        "alarmConfiguration" => "InvalidAlarmConfigException",
        "deploymentWaitType" => "InvalidDeploymentWaitTypeException",
        "description" => "DescriptionTooLongException",
        "tags" => "InvalidTagsToAddException",
        "nextToken" => "InvalidNextTokenException",
        _ => "InvalidInputException",
    }
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
        let taken = Error::in_use(InUse::RulePriority, "taken");
        let e = wire_error(&taken, "elasticloadbalancing", Protocol::Query);
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
        assert_eq!(code(&Error::already_exists(Resource::Other, "exists")), "ResourceAlreadyExistsException");
        let missing = Error::NotFound { resource: Resource::Other, message: "gone".into() };
        assert_eq!(code(&missing), "ResourceNotFoundException");
        let e = wire_error(&Error::Internal("disk".into()), "logs", Protocol::Json);
        assert_eq!((e.status, e.code), (500, "ServiceUnavailableException"));
    }

    const ELB: (&str, Protocol) = ("elasticloadbalancing", Protocol::Query);
    const ECR: (&str, Protocol) = ("api.ecr", Protocol::Json);
    const ECS: (&str, Protocol) = ("ecs", Protocol::Json);
    const LOGS: (&str, Protocol) = ("logs", Protocol::Json);
    const STS: (&str, Protocol) = ("sts", Protocol::Query);
    const SERVICES: [(&str, Protocol); 5] = [ECS, LOGS, ECR, ELB, STS];

    fn disk() -> std::io::Error {
        std::io::Error::other("disk full")
    }

    /// Each kind on the service that raises it, with the code and status that service
    /// answered with when handlers still named codes themselves.
    #[test]
    fn each_kind_answers_its_services_code() {
        use Error as E;
        let cases = [
            // ELBv2
            (E::not_found(Resource::LoadBalancer, "m"), ELB, "LoadBalancerNotFound", 400),
            (E::not_found(Resource::TargetGroup, "m"), ELB, "TargetGroupNotFound", 400),
            (E::not_found(Resource::Listener, "m"), ELB, "ListenerNotFound", 400),
            (E::not_found(Resource::Rule, "m"), ELB, "RuleNotFound", 400),
            (E::not_found(Resource::Certificate, "m"), ELB, "CertificateNotFound", 400),
            (E::already_exists(Resource::LoadBalancer, "m"), ELB, "DuplicateLoadBalancerName", 400),
            (E::already_exists(Resource::TargetGroup, "m"), ELB, "DuplicateTargetGroupName", 400),
            (E::already_exists(Resource::Listener, "m"), ELB, "DuplicateListener", 400),
            (E::in_use(InUse::RulePriority, "m"), ELB, "PriorityInUse", 400),
            (E::in_use(InUse::Resource, "m"), ELB, "ResourceInUse", 400),
            (E::limit_exceeded(Limit::Tags, "m"), ELB, "TooManyTags", 400),
            (E::limit_exceeded(Limit::Listeners, "m"), ELB, "TooManyListeners", 400),
            (E::limit_exceeded(Limit::Rules, "m"), ELB, "TooManyRules", 400),
            (E::limit_exceeded(Limit::Actions, "m"), ELB, "TooManyActions", 400),
            (E::limit_exceeded(Limit::Targets, "m"), ELB, "TooManyTargets", 400),
            (E::limit_exceeded(Limit::Certificates, "m"), ELB, "TooManyCertificates", 400),
            (E::limit_exceeded(Limit::TargetGroupAssociations, "m"), ELB, "TargetGroupAssociationLimit", 400),
            (E::invalid_input(Invalid::Target, "m"), ELB, "InvalidTarget", 400),
            (E::invalid_input(Invalid::Action, "m"), ELB, "InvalidLoadBalancerAction", 400),
            (E::invalid_input(Invalid::Configuration, "m"), ELB, "InvalidConfigurationRequest", 400),
            (E::invalid_input(Invalid::DuplicateTagKey, "m"), ELB, "DuplicateTagKeys", 400),
            (E::NotPermitted("m".into()), ELB, "OperationNotPermitted", 400),
            (E::Unsupported("m".into()), ELB, "UnsupportedProtocol", 400),
            (E::store(disk()), ELB, "InternalFailure", 500),
            // ECR
            (E::invalid("repositoryName", "m"), ECR, "InvalidParameterException", 400),
            (E::not_found(Resource::Repository, "m"), ECR, "RepositoryNotFoundException", 400),
            (E::not_found(Resource::RepositoryPolicy, "m"), ECR, "RepositoryPolicyNotFoundException", 400),
            (E::not_found(Resource::LifecyclePolicy, "m"), ECR, "LifecyclePolicyNotFoundException", 400),
            (E::not_found(Resource::LifecyclePolicyPreview, "m"), ECR, "LifecyclePolicyPreviewNotFoundException", 400),
            (E::not_found(Resource::Image, "m"), ECR, "ImageNotFoundException", 400),
            (E::not_found(Resource::Layer, "m"), ECR, "LayersNotFoundException", 400),
            (E::not_found(Resource::Upload, "m"), ECR, "UploadNotFoundException", 400),
            (E::already_exists(Resource::Repository, "m"), ECR, "RepositoryAlreadyExistsException", 400),
            (E::already_exists(Resource::Image, "m"), ECR, "ImageAlreadyExistsException", 400),
            (E::already_exists(Resource::ImageTag, "m"), ECR, "ImageTagAlreadyExistsException", 400),
            (E::in_use(InUse::RepositoryContainsImages, "m"), ECR, "RepositoryNotEmptyException", 400),
            (E::limit_exceeded(Limit::Tags, "m"), ECR, "TooManyTagsException", 400),
            (E::invalid_input(Invalid::Tag, "m"), ECR, "InvalidTagParameterException", 400),
            (E::invalid_input(Invalid::Layer, "m"), ECR, "InvalidLayerException", 400),
            (E::invalid_input(Invalid::LayerPart, "m"), ECR, "InvalidLayerPartException", 400),
            (E::invalid_input(Invalid::EmptyUpload, "m"), ECR, "EmptyUploadException", 400),
            (E::invalid_input(Invalid::ImageDigest, "m"), ECR, "ImageDigestDoesNotMatchException", 400),
            (E::registry(disk()), ECR, "ServerException", 500),
            (E::store(disk()), ECR, "InternalFailure", 500),
            // ECS
            (E::limit_exceeded(Limit::Attributes, "m"), ECS, "AttributeLimitExceededException", 400),
            (E::in_use(InUse::Resource, "m"), ECS, "ResourceInUseException", 400),
            (E::Unsupported("m".into()), ECS, "UnsupportedFeatureException", 400),
            (E::store(disk()), ECS, "ServerException", 500),
            // CloudWatch Logs
            (E::already_exists(Resource::Other, "m"), LOGS, "ResourceAlreadyExistsException", 400),
            (E::store(disk()), LOGS, "ServiceUnavailableException", 500),
            // STS
            (E::store(disk()), STS, "InternalFailure", 500),
        ];
        for (err, (service, protocol), code, status) in cases {
            let e = wire_error(&err, service, protocol);
            assert_eq!((e.code, e.status, e.sender_fault), (code, status, status < 500), "{err:?} on {service}");
            assert_eq!(e.message, err.to_string());
        }
    }

    /// A store failure is a server fault like any internal error, on every service, and
    /// keeps the store's error as its source.
    #[test]
    fn store_failures_answer_as_internal_errors_and_keep_their_source() {
        let store = Error::store(disk());
        for (service, protocol) in SERVICES {
            let (s, i) =
                (wire_error(&store, service, protocol), wire_error(&Error::Internal("x".into()), service, protocol));
            assert_eq!((s.code, s.status, s.sender_fault), (i.code, i.status, i.sender_fault), "{service}");
        }
        assert_eq!(store.to_string(), "state store failure: disk full");
        let source = std::error::Error::source(&store).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
        assert_eq!(Error::registry(disk()).to_string(), "disk full");
    }
}
