//! ECS account settings (PutAccountSetting and its kin): the names botocore's SettingName
//! allows, the values each takes, whose setting applies to a principal. Pure. Berth stores and
//! shows them; none changes what the control plane does.

/// botocore's SettingName enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SettingName {
    ServiceLongArnFormat,
    TaskLongArnFormat,
    ContainerInstanceLongArnFormat,
    AwsvpcTrunking,
    ContainerInsights,
    FargateFipsMode,
    TagResourceAuthorization,
    FargateTaskRetirementWaitPeriod,
    GuardDutyActivate,
    DefaultLogDriverMode,
    FargateEventWindows,
}

use SettingName::*;

impl SettingName {
    /// In botocore's order, which is the order ListAccountSettings answers in.
    pub const ALL: [SettingName; 11] = [
        ServiceLongArnFormat,
        TaskLongArnFormat,
        ContainerInstanceLongArnFormat,
        AwsvpcTrunking,
        ContainerInsights,
        FargateFipsMode,
        TagResourceAuthorization,
        FargateTaskRetirementWaitPeriod,
        GuardDutyActivate,
        DefaultLogDriverMode,
        FargateEventWindows,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceLongArnFormat => "serviceLongArnFormat",
            TaskLongArnFormat => "taskLongArnFormat",
            ContainerInstanceLongArnFormat => "containerInstanceLongArnFormat",
            AwsvpcTrunking => "awsvpcTrunking",
            ContainerInsights => "containerInsights",
            FargateFipsMode => "fargateFIPSMode",
            TagResourceAuthorization => "tagResourceAuthorization",
            FargateTaskRetirementWaitPeriod => "fargateTaskRetirementWaitPeriod",
            GuardDutyActivate => "guardDutyActivate",
            DefaultLogDriverMode => "defaultLogDriverMode",
            FargateEventWindows => "fargateEventWindows",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|n| n.as_str()).collect();
                format!("name: {s:?} is not one of {}", names.join(", "))
            })
    }

    /// The values the API documentation gives for the setting.
    pub fn values(self) -> &'static [&'static str] {
        match self {
            ContainerInsights => &["enhanced", "enabled", "disabled"],
            TagResourceAuthorization | GuardDutyActivate => &["on", "off"],
            FargateTaskRetirementWaitPeriod => &["0", "7", "14"],
            DefaultLogDriverMode => &["blocking", "non-blocking"],
            ServiceLongArnFormat
            | TaskLongArnFormat
            | ContainerInstanceLongArnFormat
            | AwsvpcTrunking
            | FargateFipsMode
            | FargateEventWindows => &["enabled", "disabled"],
        }
    }

    /// What a new account has, before anyone sets anything.
    pub fn default_value(self) -> &'static str {
        match self {
            ServiceLongArnFormat | TaskLongArnFormat | ContainerInstanceLongArnFormat => "enabled",
            TagResourceAuthorization => "on",
            GuardDutyActivate => "off",
            FargateTaskRetirementWaitPeriod => "7",
            // ECS's default since June 2025.
            DefaultLogDriverMode => "non-blocking",
            AwsvpcTrunking | ContainerInsights | FargateFipsMode | FargateEventWindows => {
                "disabled"
            }
        }
    }

    /// guardDutyActivate is read-only: GuardDuty sets it on the account's behalf.
    pub fn aws_managed(self) -> bool {
        self == GuardDutyActivate
    }

    /// Settings only the root user may set ("You must use the root user when you set the
    /// Fargate wait time").
    pub fn root_only(self) -> bool {
        self == FargateTaskRetirementWaitPeriod
    }
}

/// One principal's setting, or (the root user's) the account default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSetting {
    pub name: SettingName,
    pub value: String,
    pub principal_arn: String,
}

impl AccountSetting {
    /// botocore's SettingType.
    pub fn setting_type(&self) -> &'static str {
        if self.name.aws_managed() {
            "aws_managed"
        } else {
            "user"
        }
    }
}

/// The account's root user: the default principal (Berth has one caller, the account), and
/// whose settings are the account's defaults (PutAccountSettingDefault sets them).
pub fn root_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// A principal of this account: its root user, or an IAM user or role.
pub fn check_principal(arn: &str, account: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "principalArn: {arn:?} is not the ARN of this account's root user, or of an IAM user or role of it (arn:aws:iam::{account}:root, :user/NAME, :role/NAME)"
        )
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(acct), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let named = |kind: &str| {
        resource
            .strip_prefix(kind)
            .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/'))
    };
    if partition.is_empty()
        || acct != account
        || !(resource == "root" || named("user/") || named("role/"))
    {
        return Err(bad());
    }
    Ok(())
}

/// Whether `principal` may set `name` to `value`.
pub fn check_put(
    name: SettingName,
    value: &str,
    principal: &str,
    root: &str,
) -> Result<(), String> {
    if name.aws_managed() {
        return Err(format!(
            "{}: the setting is managed by AWS and cannot be changed",
            name.as_str()
        ));
    }
    if !name.values().contains(&value) {
        return Err(format!(
            "value: {value:?} is not a value of {} ({})",
            name.as_str(),
            name.values().join(", ")
        ));
    }
    if name.root_only() && principal != root {
        return Err(format!(
            "{}: only the root user ({root}) can set it",
            name.as_str()
        ));
    }
    Ok(())
}

/// What ListAccountSettings asks for.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub name: Option<SettingName>,
    pub value: Option<&'a str>,
    pub principal: &'a str,
    /// The setting that applies to the principal (its own, else the root user's, else the
    /// account's default) rather than only what was set for it.
    pub effective: bool,
}

/// The principal's setting of `name` as it applies: its own, else the root user's (the
/// account default), else what a new account has.
pub fn effective(
    name: SettingName,
    principal: &str,
    root: &str,
    stored: &[AccountSetting],
) -> AccountSetting {
    let set = |p: &str| {
        stored
            .iter()
            .find(|s| s.name == name && s.principal_arn == p)
    };
    set(principal)
        .or_else(|| set(root))
        .cloned()
        .unwrap_or_else(|| AccountSetting {
            name,
            value: name.default_value().to_string(),
            principal_arn: root.to_string(),
        })
}

/// ListAccountSettings over every stored setting, in SettingName order.
pub fn list(q: &ListQuery<'_>, root: &str, stored: &[AccountSetting]) -> Vec<AccountSetting> {
    let names: Vec<SettingName> = match q.name {
        Some(n) => vec![n],
        None => SettingName::ALL.to_vec(),
    };
    names
        .into_iter()
        .filter_map(|name| {
            if q.effective {
                Some(effective(name, q.principal, root, stored))
            } else {
                stored
                    .iter()
                    .find(|s| s.name == name && s.principal_arn == q.principal)
                    .cloned()
            }
        })
        .filter(|s| q.value.is_none_or(|v| s.value == v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "arn:aws:iam::000000000000:root";
    const ALICE: &str = "arn:aws:iam::000000000000:user/alice";

    fn set(name: SettingName, value: &str, principal: &str) -> AccountSetting {
        AccountSetting {
            name,
            value: value.into(),
            principal_arn: principal.into(),
        }
    }

    #[test]
    fn names_are_botocores() {
        for n in SettingName::ALL {
            assert_eq!(SettingName::parse(n.as_str()), Ok(n));
            assert!(n.values().contains(&n.default_value()), "{n:?}");
        }
        assert_eq!(SettingName::parse("fargateFIPSMode"), Ok(FargateFipsMode));
        assert!(SettingName::parse("dualStackIPv6").is_err());
        assert!(SettingName::parse("ContainerInsights").is_err());
    }

    #[test]
    fn values_principals_and_read_only_settings_are_checked() {
        assert_eq!(
            check_put(ContainerInsights, "enhanced", ALICE, ROOT),
            Ok(())
        );
        assert!(check_put(ContainerInsights, "on", ALICE, ROOT).is_err());
        assert!(check_put(TagResourceAuthorization, "enabled", ROOT, ROOT).is_err());
        assert_eq!(
            check_put(FargateTaskRetirementWaitPeriod, "14", ROOT, ROOT),
            Ok(())
        );
        assert!(check_put(FargateTaskRetirementWaitPeriod, "14", ALICE, ROOT).is_err());
        assert!(check_put(FargateTaskRetirementWaitPeriod, "3", ROOT, ROOT).is_err());
        assert!(check_put(GuardDutyActivate, "on", ROOT, ROOT).is_err());

        let account = "000000000000";
        for ok in [
            ROOT,
            ALICE,
            "arn:aws:iam::000000000000:role/path/deployer",
            "arn:aws-cn:iam::000000000000:root",
        ] {
            assert_eq!(check_principal(ok, account), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "root",
            "arn:aws:iam::111111111111:root",
            "arn:aws:iam::000000000000:group/admins",
            "arn:aws:iam::000000000000:user/",
            "arn:aws:sts::000000000000:assumed-role/r/s",
            "arn:aws:ecs:us-east-1:000000000000:root",
        ] {
            assert!(check_principal(bad, account).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_principals_own_setting_wins_then_the_roots_then_the_default() {
        let stored = vec![
            set(ContainerInsights, "enabled", ROOT),
            set(ContainerInsights, "enhanced", ALICE),
            set(AwsvpcTrunking, "enabled", ROOT),
        ];
        let bob = "arn:aws:iam::000000000000:user/bob";
        assert_eq!(
            effective(ContainerInsights, ALICE, ROOT, &stored).value,
            "enhanced"
        );
        let inherited = effective(ContainerInsights, bob, ROOT, &stored);
        assert_eq!(
            (inherited.value.as_str(), inherited.principal_arn.as_str()),
            ("enabled", ROOT)
        );
        assert_eq!(
            effective(FargateFipsMode, bob, ROOT, &stored),
            set(FargateFipsMode, "disabled", ROOT)
        );
        assert_eq!(
            effective(GuardDutyActivate, bob, ROOT, &stored).setting_type(),
            "aws_managed"
        );

        let q = |name, value, principal, effective| ListQuery {
            name,
            value,
            principal,
            effective,
        };
        // Only what was set for the principal, unless the effective settings are asked for.
        assert_eq!(
            list(&q(None, None, ALICE, false), ROOT, &stored),
            vec![stored[1].clone()]
        );
        assert_eq!(list(&q(None, None, bob, false), ROOT, &stored), vec![]);
        let all = list(&q(None, None, bob, true), ROOT, &stored);
        assert_eq!(all.len(), SettingName::ALL.len());
        assert_eq!(all[0].name, ServiceLongArnFormat);
        let enabled = list(&q(None, Some("enabled"), bob, true), ROOT, &stored);
        let names: Vec<SettingName> = enabled.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                ServiceLongArnFormat,
                TaskLongArnFormat,
                ContainerInstanceLongArnFormat,
                AwsvpcTrunking,
                ContainerInsights
            ]
        );
        assert_eq!(
            list(
                &q(Some(ContainerInsights), Some("disabled"), bob, true),
                ROOT,
                &stored
            ),
            vec![]
        );
        assert_eq!(
            list(&q(Some(AwsvpcTrunking), None, ROOT, false), ROOT, &stored),
            vec![stored[2].clone()]
        );
    }
}
