pub mod berth;
pub mod ecs;
