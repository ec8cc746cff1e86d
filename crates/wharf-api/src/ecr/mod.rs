//! Amazon ECR's API (JSON 1.1, `AmazonEC2ContainerRegistry_V20150921`) over the registry's
//! storage (`wharf-registry`): repositories, images, layer uploads, tag mutability,
//! lifecycle and repository policies, tags, and the authorization token `docker login` uses.

operations! {}
