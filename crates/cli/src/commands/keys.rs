//! `tollgate keys`: create an API key (shown once), list keys, revoke one.

use serde_json::{json, Map, Value};

use crate::api::{CreatedKey, KeyList};
use crate::cli::{KeysCommand, KeysCreateArgs};
use crate::client::{encode_component, Method, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;
use crate::table::{Align, Table};
use crate::time;

use super::{emit, emit_json, note, short_hash, Context};

pub fn run(ctx: &Context, command: KeysCommand) -> Result<Exit, CliError> {
    match command {
        KeysCommand::Create(args) => create(ctx, &args),
        KeysCommand::List => list(ctx),
        KeysCommand::Revoke { id } => revoke(ctx, &id),
    }
}

/// The body of `POST /_tollgate/keys`.
pub fn create_body(args: &KeysCreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("subject".to_owned(), json!(args.subject));
    body.insert("tier".to_owned(), json!(args.tier));
    if let Some(name) = &args.name {
        body.insert("name".to_owned(), json!(name));
    }
    Value::Object(body)
}

fn create(ctx: &Context, args: &KeysCreateArgs) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let path = format!("{ADMIN_PREFIX}/keys");
    let reply = client.send(Method::Post, &path, Some(&create_body(args)))?;
    let created: CreatedKey = reply.parse(&path)?;
    if created.key.is_empty() {
        return Err(CliError::BadReply { path, reason: "the reply has no key".to_owned() });
    }
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        emit(&render_created(&created, &args.subject, ctx.style))?;
    }
    note(&format!(
        "{} this is the only time the key is shown: store it now \
         (revoke with `tollgate keys revoke {}`)",
        ctx.style.warn("warning:"),
        created.id
    ));
    Ok(Exit::Ok)
}

/// The created key, on a line of its own so it is easy to copy.
pub fn render_created(created: &CreatedKey, subject: &str, style: Style) -> String {
    let name = created.name.as_deref().map(|n| format!(", name {n:?}")).unwrap_or_default();
    format!(
        "created key {} for {subject:?} (tier {}{name})\n\n    {}\n\n",
        style.bold(&created.id),
        created.tier,
        style.bold(&created.key)
    )
}

fn list(ctx: &Context) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let path = format!("{ADMIN_PREFIX}/keys");
    let reply = client.get(&path)?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        let keys: KeyList = reply.parse(&path)?;
        emit(&render_list(&keys, ctx.style))?;
    }
    Ok(Exit::Ok)
}

/// One row per key, oldest first.
pub fn render_list(keys: &KeyList, style: Style) -> String {
    if keys.keys.is_empty() {
        return "no API keys\n".to_owned();
    }
    let mut rows: Vec<_> = keys.keys.iter().collect();
    rows.sort_by_key(|k| (k.created_ms, k.id.clone()));
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("TIER", Align::Left),
        ("NAME", Align::Left),
        ("SUBJECT HASH", Align::Left),
        ("CREATED (UTC)", Align::Left),
    ]);
    for k in rows {
        table.row([
            k.id.clone(),
            k.tier.clone(),
            k.name.clone().unwrap_or_else(|| "-".to_owned()),
            short_hash(&k.subject_hash),
            k.created_ms.map_or_else(|| "-".to_owned(), time::utc_datetime),
        ]);
    }
    table.render(style)
}

fn revoke(ctx: &Context, id: &str) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let path = format!("{ADMIN_PREFIX}/keys/{}", encode_component(id));
    match client.send(Method::Delete, &path, None) {
        Ok(_) => {}
        Err(CliError::Http { status: 404, .. }) => {
            return Err(CliError::Http {
                status: 404,
                title: "not found".to_owned(),
                detail: Some(format!("no API key with id {id:?} (see `tollgate keys list`)")),
            });
        }
        Err(e) => return Err(e),
    }
    if ctx.json() {
        emit_json(&json!({ "revoked": id }))?;
    } else {
        emit(&format!("revoked key {id}\n"))?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_sent_only_when_given() {
        let args = KeysCreateArgs { subject: "user_123".into(), tier: "PRO".into(), name: None };
        assert_eq!(create_body(&args), json!({"subject": "user_123", "tier": "PRO"}));
        let named = KeysCreateArgs { name: Some("ci".into()), ..args };
        assert_eq!(create_body(&named), json!({"subject": "user_123", "tier": "PRO", "name": "ci"}));
    }

    #[test]
    fn the_key_stands_on_its_own_line() {
        let created = CreatedKey {
            id: "a1b2c3d4e5f6".into(),
            key: "tg_secret".into(),
            tier: "PRO".into(),
            name: Some("ci".into()),
            ..CreatedKey::default()
        };
        let out = render_created(&created, "user_123", Style::plain());
        assert_eq!(out, "created key a1b2c3d4e5f6 for \"user_123\" (tier PRO, name \"ci\")\n\n    tg_secret\n\n");
    }

    #[test]
    fn keys_are_listed_oldest_first_with_short_hashes() {
        let keys: KeyList = serde_json::from_value(json!({"keys": [
            {"id": "bbbbbbbbbbbb", "tier": "BASIC", "subject_hash": "0123456789abcdef0123", "name": null,
             "created_ms": 1_763_770_123_000u64},
            {"id": "aaaaaaaaaaaa", "tier": "PRO", "subject_hash": "fedcba9876543210fedc", "name": "ci",
             "created_ms": 1_763_770_000_000u64}
        ]}))
        .unwrap();
        let expected = "\
ID            TIER   NAME  SUBJECT HASH   CREATED (UTC)
aaaaaaaaaaaa  PRO    ci    fedcba987654…  2025-11-22 00:06:40
bbbbbbbbbbbb  BASIC  -     0123456789ab…  2025-11-22 00:08:43
";
        assert_eq!(render_list(&keys, Style::plain()), expected);
        assert_eq!(render_list(&KeyList::default(), Style::plain()), "no API keys\n");
    }
}
