pub mod events;
pub mod logs;
pub mod secrets;
pub mod security_groups;
