//! The operator's commands other than `serve`: tenants, the end-user switch, templates and the
//! host check, each a short function over the library crates.

use crate::cli::{Cli, Command, DataArgs, TemplateCommand, TenantCommand, UserCommand};

/// Open the store in `data` and find the tenant; the user id is checked like the API's.
async fn tenant_and_user(
    data: &DataArgs,
    tenant: &str,
    user: &str,
) -> anyhow::Result<(islet_store::Store, islet_types::TenantId)> {
    anyhow::ensure!(
        islet_types::sandbox::label_ok(user),
        "--user must be 1..={} printable characters, as external_user_id is",
        islet_types::sandbox::MAX_LABEL
    );
    let db = data.data_dir.join("islet.db");
    anyhow::ensure!(db.exists(), "no Islet data in {}", data.data_dir.display());
    let store = islet_store::Store::open(&db)?;
    let id =
        store.find_tenant(tenant).await?.ok_or_else(|| anyhow::anyhow!("no tenant `{tenant}`"))?;
    Ok((store, id))
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Suspend { tenant, user, reason, data } => {
            anyhow::ensure!(
                reason.as_ref().is_none_or(|r| r.len() <= 500),
                "--reason must be at most 500 bytes"
            );
            let (store, tenant_id) = tenant_and_user(&data, &tenant, &user).await?;
            store
                .suspend_user(&tenant_id, &user, reason, islet_store::SuspendedBy::Operator)
                .await?;
            println!(
                "{}",
                serde_json::json!({ "tenant_id": tenant_id, "external_user_id": user, "suspended": true })
            );
        }
        UserCommand::Unsuspend { tenant, user, data } => {
            let (store, tenant_id) = tenant_and_user(&data, &tenant, &user).await?;
            let (was, still) =
                store.unsuspend_user(&tenant_id, &user, islet_store::SuspendedBy::Operator).await?;
            // `suspended` stays true when the tenant's own suspension stands.
            println!(
                "{}",
                serde_json::json!({ "tenant_id": tenant_id, "external_user_id": user, "suspended": still, "was_suspended": was })
            );
        }
    }
    Ok(())
}

pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::serve::serve(*args).await,
        Command::Tenant { command: TenantCommand::Create { name, isolation, data } } => {
            anyhow::ensure!(
                !name.starts_with("__islet"),
                "tenant names starting with __islet are reserved"
            );
            data.make_data_dir()?;
            let store = islet_store::Store::open(&data.data_dir.join("islet.db"))?;
            let key = store.create_tenant(name, isolation).await?;
            println!(
                "{}",
                serde_json::json!({ "tenant_id": key.tenant_id, "api_key": key.plaintext, "api_key_id": key.id })
            );
            Ok(())
        }
        Command::User { command } => user(command).await,
        Command::Template { command: TemplateCommand::Build { name, data, mirror, force } } => {
            let canonical = islet_runtime::template::resolve(&name)
                .ok_or_else(|| anyhow::anyhow!("unknown template `{name}` (try `default`)"))?;
            let dir = data.template_dir();
            if islet_runtime::template::is_built(&dir, canonical) && !force {
                println!("template {canonical} already built at {}", dir.join(canonical).display());
                return Ok(());
            }
            std::fs::create_dir_all(&dir)?;
            islet_runtime::template::build(&dir, canonical, &mirror, 100_000, |line| {
                eprintln!("  {line}")
            })
            .await?;
            Ok(())
        }
        Command::Doctor => crate::doctor::run(),
    }
}
