//! What the store's tests share: a create request as the API would validate it.

use islet_types::{CreateSandbox, Resources};

/// A create for `user` (and `project`), default size, five minutes.
pub(crate) fn request(user: &str, project: Option<&str>) -> CreateSandbox {
    CreateSandbox {
        template_id: "miosa-sandbox".into(),
        name: None,
        external_user_id: Some(user.to_owned()),
        external_workspace_id: None,
        external_project_id: project.map(str::to_owned),
        metadata: Default::default(),
        tags: Vec::new(),
        env: Default::default(),
        resources: Resources::resolve(None, None, None, None).unwrap(),
        timeout_sec: 300,
        idle_timeout_sec: None,
        isolation: None,
        slug: None,
        always_on: false,
    }
}
