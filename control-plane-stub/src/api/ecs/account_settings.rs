//! ListAccountSettings, PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{paginate_up_to, parse, OpResult, Operation};
use crate::app::{AccountSettingsList, ControlPlane};
use crate::domain::settings::AccountSetting;

/// ListAccountSettings' pages: 10 settings unless asked for fewer (1-10).
const MAX_PAGE: usize = 10;

fn setting(s: &AccountSetting) -> Value {
    json!({
        "name": s.name.as_str(),
        "value": s.value,
        "principalArn": s.principal_arn,
        "type": s.setting_type(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    name: String,
    value: String,
    principal_arn: Option<String>,
}

fn put_account_setting(cp: &ControlPlane, r: PutRequest) -> OpResult {
    let s = cp
        .account_settings
        .put(&r.name, &r.value, r.principal_arn.as_deref())?;
    Ok(json!({"setting": setting(&s)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutDefaultRequest {
    name: String,
    value: String,
}

fn put_account_setting_default(cp: &ControlPlane, r: PutDefaultRequest) -> OpResult {
    let s = cp.account_settings.put_default(&r.name, &r.value)?;
    Ok(json!({"setting": setting(&s)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    name: String,
    principal_arn: Option<String>,
}

fn delete_account_setting(cp: &ControlPlane, r: DeleteRequest) -> OpResult {
    let s = cp
        .account_settings
        .delete(&r.name, r.principal_arn.as_deref())?;
    Ok(json!({"setting": setting(&s)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    effective_settings: bool,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_account_settings(cp: &ControlPlane, r: ListRequest) -> OpResult {
    let all = cp.account_settings.list(&AccountSettingsList {
        name: r.name,
        value: r.value,
        principal_arn: r.principal_arn,
        effective: r.effective_settings,
    })?;
    let (page, next) = paginate_up_to(all, r.max_results, r.next_token.as_deref(), MAX_PAGE)?;
    let mut v = json!({"settings": page.iter().map(setting).collect::<Vec<_>>()});
    if let Some(token) = next {
        v["nextToken"] = json!(token);
    }
    Ok(v)
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "ListAccountSettings" => |cp, r| list_account_settings(cp, parse(r)?),
        "PutAccountSetting" => |cp, r| put_account_setting(cp, parse(r)?),
        "PutAccountSettingDefault" => |cp, r| put_account_setting_default(cp, parse(r)?),
        "DeleteAccountSetting" => |cp, r| delete_account_setting(cp, parse(r)?),
        _ => return None,
    })
}
