//! A revision's status and a family's, as ListTaskDefinitions, ListTaskDefinitionFamilies and
//! DeleteTaskDefinitions see them.

/// ECS's TaskDefinitionStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDefinitionStatus {
    Active,
    /// Deregistered: tasks and services keep running it, nothing new starts from it.
    Inactive,
    /// Deleted after being deregistered. ECS removes such a revision once no task or service
    /// uses it; Berth keeps it (describable, never listed but under this status), so a task's
    /// definition is always found.
    DeleteInProgress,
}

impl TaskDefinitionStatus {
    pub fn of(active: bool, delete_requested: bool) -> Self {
        match (active, delete_requested) {
            (true, _) => TaskDefinitionStatus::Active,
            (false, false) => TaskDefinitionStatus::Inactive,
            (false, true) => TaskDefinitionStatus::DeleteInProgress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskDefinitionStatus::Active => "ACTIVE",
            TaskDefinitionStatus::Inactive => "INACTIVE",
            TaskDefinitionStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TaskDefinitionStatus::Active,
            TaskDefinitionStatus::Inactive,
            TaskDefinitionStatus::DeleteInProgress,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Why DeleteTaskDefinitions does not delete a revision of this status (ECS's failure
    /// reason), or None when it may (a DELETE_IN_PROGRESS one is deleted again, harmlessly).
    pub fn deletion_failure(self) -> Option<&'static str> {
        match self {
            TaskDefinitionStatus::Active => Some(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            ),
            TaskDefinitionStatus::Inactive | TaskDefinitionStatus::DeleteInProgress => None,
        }
    }
}

/// ListTaskDefinitionFamilies' status filter (TaskDefinitionFamilyStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyStatus {
    /// Families with at least one ACTIVE revision.
    Active,
    /// Families without any ACTIVE revision.
    Inactive,
    /// Both: ECS's default.
    All,
}

impl FamilyStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(FamilyStatus::Active),
            "INACTIVE" => Some(FamilyStatus::Inactive),
            "ALL" => Some(FamilyStatus::All),
            _ => None,
        }
    }

    pub fn includes(self, has_active_revision: bool) -> bool {
        match self {
            FamilyStatus::Active => has_active_revision,
            FamilyStatus::Inactive => !has_active_revision,
            FamilyStatus::All => true,
        }
    }
}

/// DeleteTaskDefinitions takes 1 to 10 revisions.
pub const MAX_DELETE_REVISIONS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_deletable_once_deregistered() {
        let s = TaskDefinitionStatus::of;
        assert_eq!(s(true, false), TaskDefinitionStatus::Active);
        assert_eq!(s(false, false), TaskDefinitionStatus::Inactive);
        assert_eq!(s(false, true), TaskDefinitionStatus::DeleteInProgress);
        assert!(TaskDefinitionStatus::Active.deletion_failure().is_some());
        assert_eq!(TaskDefinitionStatus::Inactive.deletion_failure(), None);
        assert_eq!(
            TaskDefinitionStatus::DeleteInProgress.deletion_failure(),
            None
        );
        for t in [
            TaskDefinitionStatus::Active,
            TaskDefinitionStatus::Inactive,
            TaskDefinitionStatus::DeleteInProgress,
        ] {
            assert_eq!(TaskDefinitionStatus::parse(t.as_str()), Some(t));
        }
        assert_eq!(TaskDefinitionStatus::parse("ALL"), None);
    }

    #[test]
    fn a_family_is_active_when_it_has_an_active_revision() {
        assert!(FamilyStatus::Active.includes(true));
        assert!(!FamilyStatus::Active.includes(false));
        assert!(FamilyStatus::Inactive.includes(false));
        assert!(!FamilyStatus::Inactive.includes(true));
        assert!(FamilyStatus::All.includes(true) && FamilyStatus::All.includes(false));
        assert_eq!(FamilyStatus::parse("DELETE_IN_PROGRESS"), None);
    }
}
