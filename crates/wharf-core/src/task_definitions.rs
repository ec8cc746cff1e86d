//! Finding task definitions: by family (its latest ACTIVE revision), `family:revision` or ARN.

use crate::Scoped;
use crate::db::Versioned;
use crate::keys::Keys;
use wharf_types::ecs::{ContainerDefinition, TaskDefinition};
use wharf_types::{Arn, Error, Result};

/// Resolves `family`, `family:revision` or an ARN. A bare family means its latest ACTIVE
/// revision.
pub async fn resolve(s: &Scoped, reference: &str, field: &str) -> Result<Option<Versioned<TaskDefinition>>> {
    let keys = Keys::new(s);
    let spec = if reference.starts_with("arn:") {
        let arn = Arn::parse_in(reference, &s.scope, "ecs", field)?;
        match arn.resource_parts() {
            ("task-definition", rest) => rest.to_string(),
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("The ARN '{reference}' in {field} is not a task definition ARN."),
                ));
            }
        }
    } else {
        reference.to_string()
    };
    match spec.rsplit_once(':') {
        Some((family, rev)) => {
            let Ok(rev) = rev.parse::<i64>() else {
                return Err(Error::invalid(field, format!("Invalid revision '{rev}' in {field} '{reference}'.")));
            };
            s.db.get::<TaskDefinition>(&keys.taskdef(family, rev)).await
        }
        None => {
            // The newest revision is almost always the ACTIVE one: look at it alone first,
            // then walk back in growing pages.
            let mut after = None;
            let mut page_size = 1;
            loop {
                let (page, more) = s.db.range::<TaskDefinition>(&keys.family(&spec), after, page_size, true).await?;
                if let Some(td) = page.iter().find(|t| t.doc.status == "ACTIVE") {
                    return Ok(Some(td.clone()));
                }
                match page.last() {
                    Some(last) if more => after = Some(last.key.clone()),
                    _ => return Ok(None),
                }
                page_size = (page_size * 4).min(256);
            }
        }
    }
}

/// Resolves a reference that must name an existing task definition.
pub async fn require(s: &Scoped, reference: &str, field: &str) -> Result<Versioned<TaskDefinition>> {
    resolve(s, reference, field).await?.ok_or_else(|| Error::client("Unable to describe task definition."))
}

/// The container definitions of `td` by name.
pub fn container<'a>(td: &'a TaskDefinition, name: &str) -> Option<&'a ContainerDefinition> {
    td.container_definitions.iter().find(|c| c.name.as_deref() == Some(name))
}
