//! Account settings: ListAccountSettings, PutAccountSetting, PutAccountSettingDefault,
//! DeleteAccountSetting. Stored and shown; nothing else in Berth reads them. The caller is
//! always the account's root user (Berth verifies no signatures), so an absent principalArn
//! is the root user's.

use std::sync::Arc;

use super::CpError;
use crate::domain::settings::{self, AccountSetting, ListQuery, SettingName};
use crate::state::Store;

#[derive(Clone)]
pub struct AccountSettings {
    store: Arc<dyn Store>,
    account: String,
    root: String,
}

/// ListAccountSettings' request, as decoded at the edge.
#[derive(Debug, Default)]
pub struct ListInput {
    pub name: Option<String>,
    pub value: Option<String>,
    pub principal_arn: Option<String>,
    pub effective: bool,
}

impl AccountSettings {
    pub fn new(store: Arc<dyn Store>, account: &str) -> Self {
        Self {
            store,
            account: account.to_string(),
            root: settings::root_arn(account),
        }
    }

    /// PutAccountSetting: the principal's own value (the root user's is the account default).
    pub fn put(
        &self,
        name: &str,
        value: &str,
        principal_arn: Option<&str>,
    ) -> Result<AccountSetting, CpError> {
        let name = SettingName::parse(name).map_err(CpError::InvalidParameter)?;
        let principal = self.principal(principal_arn)?;
        settings::check_put(name, value, &principal, &self.root)
            .map_err(CpError::InvalidParameter)?;
        let setting = AccountSetting {
            name,
            value: value.to_string(),
            principal_arn: principal,
        };
        self.store.put_account_setting(&setting)?;
        Ok(setting)
    }

    /// PutAccountSettingDefault: the value for every principal without one of its own.
    pub fn put_default(&self, name: &str, value: &str) -> Result<AccountSetting, CpError> {
        self.put(name, value, Some(&self.root.clone()))
    }

    /// DeleteAccountSetting: the principal's own value goes; returned is the removed one, or,
    /// when it had none, the one that applies to it.
    pub fn delete(
        &self,
        name: &str,
        principal_arn: Option<&str>,
    ) -> Result<AccountSetting, CpError> {
        let name = SettingName::parse(name).map_err(CpError::InvalidParameter)?;
        let principal = self.principal(principal_arn)?;
        if name.aws_managed() {
            return Err(CpError::InvalidParameter(format!(
                "{}: the setting is managed by AWS and cannot be changed",
                name.as_str()
            )));
        }
        match self.store.delete_account_setting(name, &principal)? {
            Some(removed) => Ok(removed),
            None => {
                let stored = self.store.list_account_settings()?;
                Ok(settings::effective(name, &principal, &self.root, &stored))
            }
        }
    }

    /// ListAccountSettings, unpaged.
    pub fn list(&self, input: &ListInput) -> Result<Vec<AccountSetting>, CpError> {
        let name = input
            .name
            .as_deref()
            .map(SettingName::parse)
            .transpose()
            .map_err(CpError::InvalidParameter)?;
        if input.value.is_some() && name.is_none() {
            return Err(CpError::InvalidParameter(
                "value: a value filter needs the setting's name too".into(),
            ));
        }
        let principal = self.principal(input.principal_arn.as_deref())?;
        let stored = self.store.list_account_settings()?;
        let query = ListQuery {
            name,
            value: input.value.as_deref(),
            principal: &principal,
            effective: input.effective,
        };
        Ok(settings::list(&query, &self.root, &stored))
    }

    fn principal(&self, principal_arn: Option<&str>) -> Result<String, CpError> {
        match principal_arn {
            None => Ok(self.root.clone()),
            Some(arn) => {
                settings::check_principal(arn, &self.account).map_err(CpError::InvalidParameter)?;
                Ok(arn.to_string())
            }
        }
    }
}
